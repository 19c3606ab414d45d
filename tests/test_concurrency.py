"""Two shards at once: every file a job writes (outputs, caches, logs, temporary files) is its own.

Every Python process of the run loads a sitecustomize that records, through Python's audit hooks,
each file it opens for writing, renames into place or opens as SQLite, with its command line.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.testing.vllm_server import served_engine
from tests.conftest import EASY_PROBLEMS
from tests.snakemake_run import ROOT, snakemake, write_config

pytestmark = pytest.mark.snakemake

RECORDER = """
import atexit, json, os, sys, time

_LOG = os.environ["JOURNEY_WRITE_LOG"]
_busy = False


def _job():
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().replace(b"\\0", b" ").decode(errors="replace").strip()


def _record(kind, path):
    global _busy
    if _busy:
        return
    _busy = True
    try:
        line = json.dumps({"pid": os.getpid(), "job": _job(), "t": time.time(), kind: path})
        with open(os.path.join(_LOG, f"{os.getpid()}.jsonl"), "a") as f:
            f.write(line + "\\n")
    finally:
        _busy = False


def _hook(event, args):
    if event == "open" and isinstance(args[0], str):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
            _record("path", os.path.abspath(args[0]))
    elif event == "os.rename":
        _record("path", os.path.abspath(os.fsdecode(args[1])))
    elif event == "sqlite3.connect":
        _record("path", os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_hook)
_record("start", True)
atexit.register(_record, "end", True)
"""


def recorded(log_dir: Path) -> list[dict]:
    return [json.loads(line) for f in log_dir.glob("*.jsonl") for line in f.read_text().splitlines()]


def _ignored(path: str, log_dir: Path) -> bool:
    """Devices, compiled-module caches, the recorder's logs and snakemake's own bookkeeping (which
    its job runner shares with the scheduler by design) are not the pipeline's files."""
    return (
        path.startswith(("/dev/", "/proc/", str(log_dir), str(ROOT / ".snakemake"))) or "__pycache__" in path
    )


def test_two_shards_running_at_once_never_write_the_same_file(server_url, tmp_path):
    hooks, log_dir = tmp_path / "hooks", tmp_path / "writes"
    hooks.mkdir()
    log_dir.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORDER)
    endpoint = served_engine(server_url)
    config = write_config(
        tmp_path,
        "concurrent",
        [*EASY_PROBLEMS, {"problem_id": "add-1-1", "problem": "What is 1 + 1?", "answer": "2"}],
        engines={"endpoint": endpoint},
        policy={"engine": "endpoint", "width": 3},
        critic={"engine": "endpoint"},
        polish={"engine": "endpoint", "max_tokens": 256},
    )
    env = {**os.environ, "PYTHONPATH": str(hooks), "JOURNEY_WRITE_LOG": str(log_dir)}
    # Endpoint engines hold no model here, so both shards' model stages may run side by side.
    proc = snakemake("--configfile", str(config), "--resources", "llm=2", env=env)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]

    records = recorded(log_dir)
    writers: dict[str, set[str]] = defaultdict(set)
    spans: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if " pipeline " in f" {r['job']} ":
            spans[r["job"]].append(r["t"])
        if "path" in r and not _ignored(r["path"], log_dir):
            writers[r["path"]].add(r["job"])
    shared = {path: jobs for path, jobs in writers.items() if len(jobs) > 1}
    assert not shared, shared

    out = tmp_path / "outputs" / "concurrent"
    for stage in ("trees", "polish"):
        jobs = sorted(job for job in spans if f"pipeline {stage} " in job)
        assert len(jobs) == 2, jobs
        (start_a, end_a), (start_b, end_b) = ((min(spans[j]), max(spans[j])) for j in jobs)
        assert max(start_a, start_b) < min(end_a, end_b), f"the two {stage} jobs did not overlap"
        # Each shard's job wrote its own output, stats and response cache.
        for job, shard in zip(jobs, ("shard-00000", "shard-00001")):
            folder = "polished" if stage == "polish" else stage
            mine = {p for p, js in writers.items() if job in js}
            assert str(out / folder / f"{shard}.cache.sqlite") in mine, sorted(mine)
            assert str(out / folder / f"{shard}.parquet") in mine, sorted(mine)
