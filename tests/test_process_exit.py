"""A finished job that skips the interpreter's teardown still leaves everything a normal exit would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.snakemake_run import ROOT

# A process that looks as if it had imported torch (the fast exit's condition), with an exit handler
# and output left in stdout's buffer.
PRELUDE = """
import atexit, sys, threading, time, types
sys.modules["torch"] = types.ModuleType("torch")
from pipeline.termination import exit_process
atexit.register(lambda: print("exit handler ran", flush=True))
sys.stdout.write("buffered line\\n")
"""


def run(body: str) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    # stdout a pipe: block-buffered, as in a Snakemake or SLURM job.
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code", [0, 3])
def test_the_exit_code_the_buffered_output_and_the_exit_handlers_survive(code):
    proc = run(f"exit_process({code})")
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "buffered line\nexit handler ran\n"


def test_a_thread_still_writing_finishes_before_the_process_ends(tmp_path):
    target = tmp_path / "written-late.txt"
    proc = run(
        f"""
        def late_write():
            time.sleep(0.5)
            open({str(target)!r}, "w").write("done")
        threading.Thread(target=late_write).start()
        exit_process(0)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(target).read_text() == "done"
