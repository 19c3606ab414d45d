"""p5_rss_growth: peak RSS of a trees job when the problem set is 10x larger, same shard size, over 1x.

A trees job reads one shard, so its memory should follow the shard size, not the size of the whole
problem set. Both sizes run the real CLI stages as subprocesses (`python -m pipeline problems`, then
`python -m pipeline trees` on shard 0), in a temporary folder of their own, each with a fresh response
cache. The 10x set is the bundled problems repeated whole (copy k's ids end in `-rk`, copy 0 keeps
the original ids), so shard 0 holds the same problems at both sizes and grows the same trees: only
the size of the set around it differs.

Memory is sampled every `interval_s` as the RSS summed over the job's process and all its
descendants (the vLLM engine core and its worker, the math-verify pool), the peak kept. RSS counts a
page shared by several processes (torch's libraries, say) once per process; the PSS sum, which
splits such pages between their processes, is given beside it.

    from benchmarks import rss_growth; print(rss_growth.run().line())
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import yaml

from benchmarks import Figure
from pipeline.config import PROJECT_ROOT

SAMPLE_PROBLEMS = PROJECT_ROOT / "pipeline" / "data" / "sample_problems.jsonl"
JOB_TIMEOUT_S = 600.0
MB = 1 << 20


@dataclass
class Peak:
    """One subprocess's run: the peak of its process tree's summed RSS, and what made it up."""

    rss: int = 0  # bytes, summed over the tree at the sample where the sum was highest
    pss: int = 0  # bytes, the highest PSS sum seen (0 when PSS cannot be read)
    at_peak: list[tuple[str, int]] = field(default_factory=list)  # (process, RSS bytes) at the RSS peak
    processes: int = 0  # most processes in the tree at one sample
    samples: int = 0
    seconds: float = 0.0


def _label(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        cmd = proc.cmdline()
        if len(cmd) >= 4 and cmd[1:3] == ["-m", "pipeline"]:
            return f"pipeline {cmd[3]}"
        if any("multiprocessing" in part for part in cmd):
            return f"{proc.name()} (multiprocessing)"
        return proc.name()
    return "?"


def _sample(root: psutil.Process, peak: Peak) -> None:
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    rows, pss = [], 0
    for proc in procs:
        try:
            rows.append((proc, proc.memory_info().rss))
        except psutil.Error:  # exited between the listing and the read
            continue
        try:
            pss += proc.memory_full_info().pss
        except (psutil.Error, AttributeError):
            pass
    total = sum(rss for _, rss in rows)
    peak.samples += 1
    peak.processes = max(peak.processes, len(rows))
    peak.pss = max(peak.pss, pss)
    if total > peak.rss:
        peak.rss = total
        peak.at_peak = [(_label(p), rss) for p, rss in sorted(rows, key=lambda r: -r[1])]


def measure(cmd: list[str], log_path: Path, env: dict, interval_s: float = 0.2) -> Peak:
    """Run cmd from the project root, sampling its process tree's memory until it exits."""
    peak = Peak()
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # A session of its own, so a timeout or an error here stops the engine-core workers too.
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        root = psutil.Process(proc.pid)
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                _sample(root, peak)
                stop.wait(interval_s)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        try:
            proc.wait(timeout=JOB_TIMEOUT_S)
        finally:
            stop.set()
            thread.join()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the job left behind (nothing, normally)
        proc.wait()
    peak.seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited with code {proc.returncode}:\n{tail}")
    return peak


def write_problems(path: Path, copies: int) -> int:
    """The bundled problems, `copies` times over with distinct ids; returns the number of rows."""
    rows = [json.loads(line) for line in SAMPLE_PROBLEMS.read_text().splitlines() if line.strip()]
    with open(path, "w") as f:
        for k in range(copies):
            for row in rows:
                f.write(json.dumps({**row, "id": row["id"] if k == 0 else f"{row['id']}-r{k}"}) + "\n")
    return copies * len(rows)


def write_config(path: Path, problems: Path, shard_size: int, width: int, depth: int) -> None:
    cfg = {
        "problems": {"source": str(problems), "shard_size": shard_size},
        "policy": {"width": width, "max_depth": depth},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@dataclass
class SizeRun:
    problems: int
    shards: int
    shard_problems: int
    nodes: int
    problems_job: Peak
    trees_job: Peak


def run_size(root: Path, copies: int, shard_size: int, width: int, depth: int, env: dict) -> SizeRun:
    work = root / f"x{copies}"
    work.mkdir()
    n = write_problems(work / "problems.jsonl", copies)
    cfg = work / "config.yaml"
    write_config(cfg, work / "problems.jsonl", shard_size, width, depth)
    py = [sys.executable, "-m", "pipeline"]
    problems_job = measure(
        [*py, "problems", "--config", str(cfg), "--out-dir", str(work / "problems")],
        work / "problems.log",
        env,
    )
    problem_stats = json.loads((work / "problems" / "stats.json").read_text())
    if problem_stats["problems"] != n:
        raise RuntimeError(f"{copies}x: {problem_stats['problems']} of {n} problems valid; see {work}")
    shard = work / "problems" / "shard-00000.parquet"
    out = work / "trees" / "shard-00000.parquet"
    out.parent.mkdir()
    trees_job = measure(
        [*py, "trees", "--config", str(cfg), "--problems", str(shard), "--out", str(out)],
        work / "trees.log",
        env,
    )
    return SizeRun(
        problems=n,
        shards=problem_stats["shards"],
        shard_problems=pq.read_metadata(shard).num_rows,
        nodes=pq.read_metadata(out).num_rows,
        problems_job=problems_job,
        trees_job=trees_job,
    )


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


def run(
    problems_multiplier: int = 10,
    shard_size: int = 8,
    width: int = 2,
    depth: int = 2,
    interval_s: float = 0.2,
) -> Figure:
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="journey-rss-") as tmp:
        small = run_size(Path(tmp), 1, shard_size, width, depth, env)
        large = run_size(Path(tmp), problems_multiplier, shard_size, width, depth, env)
    total_s = time.perf_counter() - start
    ratio = large.trees_job.rss / small.trees_job.rss
    m = problems_multiplier
    top = large.trees_job.at_peak
    return Figure(
        "p5_rss_growth",
        round(ratio, 3),
        "<= 1.1",
        [
            f"trees job peak RSS (process tree summed): 1x {_mb(small.trees_job.rss)}, {m}x {_mb(large.trees_job.rss)}"
            f" (peak PSS sum: {_mb(small.trees_job.pss)}, {_mb(large.trees_job.pss)})",
            f"problems job peak RSS: 1x {_mb(small.problems_job.rss)}, {m}x {_mb(large.problems_job.rss)}",
            f"shard size {shard_size}: 1x {small.problems} problems in {small.shards} shards, "
            f"{m}x {large.problems} in {large.shards}; the trees job ran shard-00000 "
            f"({small.shard_problems} and {large.shard_problems} problems; {small.nodes} and {large.nodes} nodes; "
            f"policy width {width}, max depth {depth}, the default config's engine and KV cache)",
            f"seconds per job: problems {small.problems_job.seconds:.1f} / {large.problems_job.seconds:.1f}, "
            f"trees {small.trees_job.seconds:.1f} / {large.trees_job.seconds:.1f} (1x / {m}x); "
            f"whole figure {total_s:.0f} s",
            f"at the {m}x trees peak ({large.trees_job.processes} processes at most, "
            f"{large.trees_job.samples} samples every {interval_s} s): "
            + ", ".join(f"{name} {_mb(rss)}" for name, rss in top),
        ],
    )


if __name__ == "__main__":
    figure = run(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    print(figure.line())
    print(*(f"  {d}" for d in figure.details), sep="\n")
