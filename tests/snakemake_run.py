"""Run the real snakemake on the real Snakefile from tests, on a config written for the test."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--nolock"]
# Polish in tests not about polish: one short attempt, as the 135M polisher passes almost no guard at
# any length; the tests of retries and of passing journeys (test_polish) set their own.
POLISH = {"max_tokens": 128, "attempts": 1}


def snakemake(
    *args: str, env: dict | None = None, profile: str | None = "profiles/local"
) -> subprocess.CompletedProcess:
    """snakemake on the project's Snakefile; `profile=None` leaves the profile to `args`."""
    cmd = [sys.executable, "-m", "snakemake", *(["--profile", profile] if profile else []), "--nolock", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)


def write_config(tmp: Path, run: str, problem_rows: list[dict], **sections) -> Path:
    source = tmp / f"{run}.jsonl"
    rows = [{"id": p["problem_id"], "problem": p["problem"], "answer": p["answer"]} for p in problem_rows]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp / f"{run}.yaml"
    base = {
        "run": run,
        "output_root": str(tmp / "outputs"),
        "problems": {"source": str(source), "shard_size": 2},
        "policy": {"width": 4, "max_depth": 3},
        "polish": POLISH,
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    config.write_text(yaml.safe_dump(base))
    return config


def assert_no_secret(secret: str, proc: subprocess.CompletedProcess, *folders: Path) -> None:
    """The secret is in no byte of the run's console output or of any file under the folders."""
    assert secret not in proc.stdout + proc.stderr
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def snapshot(out: Path) -> dict[str, object]:
    """Every file of a run: parquet as rows, other files by presence (stats and report hold wall times)."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and "logs" not in path.relative_to(out).parts:
            rel = str(path.relative_to(out))
            files[rel] = pq.read_table(path).to_pylist() if path.suffix == ".parquet" else None
    return files


def shard_rows(folder: Path) -> list[dict]:
    """Every row of a stage's shards in `folder`, in shard order."""
    return [r for path in sorted(folder.glob("shard-*.parquet")) for r in pq.read_table(path).to_pylist()]


def copy_caches(source: Path, target: Path) -> None:
    """Every response cache of the run in `source` to the same place under `target`."""
    for cache in sorted(source.rglob("*.cache.sqlite")):
        dest = target / cache.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache, dest)


def cached_requests(cache: Path) -> int:
    """Distinct requests a response cache holds (0 before the job created it)."""
    if not cache.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{cache}?mode=ro", uri=True)) as db:
        try:
            return db.execute("SELECT COUNT(DISTINCT key) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:  # created a moment ago, its table not yet committed
            return 0
