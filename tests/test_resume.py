"""Kill -9 the workflow at random points; the README's resume command finishes it, identical to a
run that was never interrupted (same config, seed and response cache)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.io.tables import PROBLEM_SCHEMA, write_table
from pipeline.testing.vllm_server import served_engine
from tests.conftest import EASY_PROBLEMS
from tests.snakemake_run import (
    ROOT,
    SNAKEMAKE,
    cached_requests,
    copy_caches,
    snakemake,
    snapshot,
    write_config,
)

pytestmark = pytest.mark.snakemake

# The README's resume procedure: release the lock the killed run left, then run again; the local
# profile has rerun-incomplete, so jobs that were cut off run again from their inputs.
WITH_LOCK = [arg for arg in SNAKEMAKE if arg != "--nolock"]
STAGES = ("problems", "trees", "thoughts", "polish", "export", "report")
# Each trial waits for one stage's job to start, then kills everything a random moment later: every
# stage once, the trees stage (the one with the most state in flight) twice (the second kill lands in
# the run that resumes the first).
TRIALS = ("problems", "trees", "trees", "thoughts", "polish", "export", "report")


def running_stage(pid: int) -> str:
    """The pipeline stage a job of the snakemake run is running, or "snakemake" between jobs."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return "finished"
    for child in children:
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "pipeline" in cmd and cmd.index("pipeline") + 1 < len(cmd):
            stage = cmd[cmd.index("pipeline") + 1]
            if stage in STAGES:
                return stage
    return "snakemake"


def kill_when(config: Path, ready, delay: float = 0.0) -> str:
    """Start the workflow, wait until ready(pid) holds, `delay` seconds more, then kill -9 its whole
    process group; returns the stage that was running when the kill landed."""
    proc = subprocess.Popen(
        [*WITH_LOCK, "--configfile", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not ready(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    hit = running_stage(proc.pid)
    # The run may have finished in the meantime: then there is nothing left to kill.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return hit


def unlock(config: Path) -> None:
    """Release the lock a killed run left (the README's first resume step)."""
    proc = subprocess.run(
        [*WITH_LOCK, "--configfile", str(config), "--unlock"], cwd=ROOT, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def resume(config: Path, *targets: str) -> subprocess.CompletedProcess:
    """The README's resume: release the dead run's lock, then the same command again (up to
    `targets`, when given)."""
    unlock(config)
    return subprocess.run(
        # Targets first: --configfile takes every word after it.
        [*WITH_LOCK, *targets, "--configfile", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def reference(server_url, tmp_path_factory):
    """An uninterrupted run; its problem file and response caches are every trial's."""
    tmp = tmp_path_factory.mktemp("reference")
    config = endpoint_config(tmp, server_url)
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return tmp / "outputs" / "resume"


def endpoint_config(tmp: Path, server_url: str, source: Path | None = None) -> Path:
    endpoint = served_engine(server_url)
    return write_config(
        tmp,
        "resume",
        EASY_PROBLEMS,
        problems={"source": str(source)} if source else {},
        engines={"endpoint": endpoint},
        policy={"engine": "endpoint", "width": 3},
        critic={"engine": "endpoint"},
        polish={"engine": "endpoint"},
    )


def trial_with_reference_caches(tmp: Path, reference: Path, server_url: str) -> tuple[Path, Path]:
    source = reference.parent.parent / "resume.jsonl"
    config = endpoint_config(tmp, server_url, source)
    out = Path(yaml.safe_load(config.read_text())["output_root"]) / "resume"
    copy_caches(reference, out)
    return config, out


def test_same_config_seed_and_cache_give_identical_parquet(reference, server_url, tmp_path):
    config, out = trial_with_reference_caches(tmp_path, reference, server_url)
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert snapshot(out) == snapshot(reference)


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_outputs(reference, server_url, tmp_path):
    rng = random.Random(6)
    config, out = trial_with_reference_caches(tmp_path, reference, server_url)
    hits = []
    # One run killed again and again: each kill lands in the resume of the run killed before it, a
    # random moment into the next trial's stage (the quickest stages last about two seconds).
    for stage in TRIALS:
        if hits:
            unlock(config)
        hits.append(
            kill_when(config, lambda pid, stage=stage: running_stage(pid) == stage, rng.uniform(0.0, 0.6))
        )
    print(f"kills landed during: {hits}")
    resumed = resume(config)
    assert resumed.returncode == 0, f"after kills during {hits}: " + resumed.stderr[-5000:]
    # Row for row what the uninterrupted run wrote, no half-written or temporary file left.
    assert snapshot(out) == snapshot(reference), f"killed during {hits}"
    assert len(set(hits) & set(STAGES)) >= 5, hits


def test_a_temporary_file_left_by_a_killed_write_is_cleared_by_the_next_write(tmp_path):
    target = tmp_path / "shard-00000.parquet"
    (tmp_path / ".shard-00000.parquet.999999.tmp").write_bytes(b"PAR1 cut short by kill -9")
    (tmp_path / ".shard-00001.parquet.999999.tmp").write_bytes(b"another shard's, left alone")
    write_table(EASY_PROBLEMS[:1], PROBLEM_SCHEMA, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shard-00001.parquet.999999.tmp", target.name]


def test_kill_9_while_the_engine_is_being_paid_loses_no_answered_call(server_url, tmp_path):
    config = endpoint_config(tmp_path, server_url)
    out = tmp_path / "outputs" / "resume"
    cache = out / "trees" / "shard-00000.cache.sqlite"
    kill_when(config, lambda _: cached_requests(cache) > 0)
    answered = cached_requests(cache)
    assert answered > 0 and not (out / "trees" / "shard-00000.parquet").exists()

    # Up to the trees shard the kill cut short: the later stages have nothing to do with this test.
    resumed = resume(config, str(out / "trees" / "shard-00000.parquet"))
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    # Every call answered before the kill came back from the cache instead of the endpoint.
    stats = json.loads((out / "trees" / "shard-00000.stats.json").read_text())
    assert stats["engines"]["endpoint"]["cache_hits"] == answered
    assert {n["problem_id"] for n in pq.read_table(out / "trees" / "shard-00000.parquet").to_pylist()} == {
        "pens",
        "add-2-3",
    }
