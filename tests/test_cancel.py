"""A job cancelled with SIGTERM (Snakemake's and SLURM's cancel) ends its engine processes and resumes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import EASY_PROBLEMS
from tests.snakemake_run import ROOT, cached_requests, write_config

pytestmark = pytest.mark.vllm

PY = [sys.executable, "-m", "pipeline"]


def start_trees(config: Path, problems: Path, out: Path, log: Path) -> subprocess.Popen:
    cmd = [*PY, "trees", "--config", str(config), "--problems", str(problems), "--out", str(out)]
    with log.open("w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def test_sigterm_stops_the_engine_processes_and_the_job_resumes_from_its_cache(tmp_path):
    config = write_config(tmp_path, "cancel", EASY_PROBLEMS[:2], policy={"width": 2, "max_depth": 2})
    problems_dir = tmp_path / "problems"
    made = subprocess.run(
        [*PY, "problems", "--config", str(config), "--out-dir", str(problems_dir)], cwd=ROOT
    )
    assert made.returncode == 0
    problems = problems_dir / "shard-00000.parquet"
    out = tmp_path / "trees" / "shard-00000.parquet"
    cache = out.with_name("shard-00000.cache.sqlite")
    log = tmp_path / "trees.log"

    job = start_trees(config, problems, out, log)
    try:
        deadline = time.monotonic() + 600
        while cached_requests(cache) == 0 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.poll() is None, (
            "the job ended before the test could cancel it:\n" + log.read_text()[-3000:]
        )
        started = psutil.Process(job.pid).children(recursive=True)
        assert started, "the in-process engine runs in processes of its own"

        job.send_signal(signal.SIGTERM)  # the job's main process only, as Snakemake's cancel does
        job.wait(timeout=60)
        # Python's own exit status for SIGTERM (128 + 15), after the engines were closed.
        assert job.returncode == 143, log.read_text()[-3000:]
        gone, alive = psutil.wait_procs(started, timeout=10)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        if job.poll() is None:
            job.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)

    assert "cancelled by SIGTERM" in log.read_text()
    answered = cached_requests(cache)
    assert answered > 0 and not out.exists()  # no half-written output, every answered call kept

    resumed = start_trees(config, problems, out, tmp_path / "resumed.log")
    assert resumed.wait(timeout=900) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    stats = json.loads(out.with_name("shard-00000.stats.json").read_text())
    assert stats["engines"]["local"]["cache_hits"] >= answered
