"""`python -m pipeline estimate`: the run on the first N problems, then its tokens, cost and time scaled
to the whole dataset, with the spread across the sample's problems.

The sample runs the same stages with the same seeds as the real run, and its response caches are merged
into the real run's shard caches afterwards: the real run finds those problems' calls answered and
pays for them once. One engine serves every stage of the sample (one model load).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path

from pipeline.config import Config
from pipeline.costs import run_costs
from pipeline.engines import EngineStats, Opener, cache_path, open_engine
from pipeline.engines.base import generate_async
from pipeline.engines.cache import merge_cache
from pipeline.io.tables import (
    NODE_SCHEMA,
    POLISHED_SCHEMA,
    PROBLEM_SCHEMA,
    THOUGHT_SCHEMA,
    read_table,
    write_json,
    write_table,
)
from pipeline.stages.polish import run_polish
from pipeline.stages.problems import run_problems
from pipeline.stages.thoughts import merge_thoughts, run_method
from pipeline.stages.trees import run_trees

log = logging.getLogger(__name__)

SAMPLE = "sample"
_COUNTERS = [f.name for f in fields(EngineStats)]


class _Borrowed:
    """One stage's view of a shared engine: its counters from when the stage opened it, and a close
    that leaves the engine to the next stage."""

    def __init__(self, engine):
        self._engine = engine
        self._start = engine.stats.as_dict()

    @property
    def stats(self) -> EngineStats:
        now = self._engine.stats.as_dict()
        return EngineStats(**{k: now[k] - self._start[k] for k in _COUNTERS})

    def generate(self, requests):
        return self._engine.generate(requests)

    async def agenerate(self, requests):
        # Defined here, not reached through __getattr__: generate_async looks for it on the class.
        return await generate_async(self._engine, requests)

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


class _SharedOpener:
    def __init__(self, opener: Opener):
        self._opener = opener
        self.engines: dict[str, object] = {}

    def __call__(self, settings):
        if settings.name not in self.engines:
            self.engines[settings.name] = self._opener(settings)
        return _Borrowed(self.engines[settings.name])

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


def _sample_problems(problems_dir: Path, n: int) -> list[tuple[str, dict]]:
    """The first n problems of the run, with the shard each lies in."""
    out = []
    for shard in sorted(problems_dir.glob("shard-*.parquet")):
        out += [(shard.stem, p) for p in read_table(shard, PROBLEM_SCHEMA).to_pylist()]
        if len(out) >= n:
            break
    return out[:n]


def _spread(values: list[float]) -> dict:
    """
    >>> _spread([1, 3, 8])
    {'min': 1, 'median': 3, 'max': 8, 'mean': 4.0}
    """
    if not values:
        return {"min": None, "median": None, "max": None, "mean": None}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 1),
    }


def _generated_per_problem(out: Path, problem_ids: list[str]) -> list[int]:
    """Generated tokens per problem that the tables record: the policy's steps, the thoughts methods'
    and the polisher's (the scorers' tokens are counted per stage only)."""
    per: Counter = Counter({pid: 0 for pid in problem_ids})
    for n in read_table(out / "trees" / f"{SAMPLE}.parquet", NODE_SCHEMA).to_pylist():
        per[n["problem_id"]] += n["tokens"]
    for r in read_table(out / "thoughts" / f"{SAMPLE}.parquet", THOUGHT_SCHEMA).to_pylist():
        per[r["problem_id"]] += r["engine_tokens"]
    for r in read_table(out / "polished" / f"{SAMPLE}.parquet", POLISHED_SCHEMA).to_pylist():
        per[r["problem_id"]] += r["polish_tokens"]
    return [per[pid] for pid in problem_ids]


def run_estimate(cfg: Config, sample: int, out_dir: str | Path, opener: Opener = open_engine) -> dict:
    """Run the first `sample` problems under out_dir, write out_dir/estimate.json, merge the caches."""
    start = time.perf_counter()
    out, run_dir = Path(out_dir), Path(cfg.output_root) / cfg.run
    problems = run_problems(cfg, out / "problems")
    picked = _sample_problems(out / "problems", sample)
    if not picked:
        raise ValueError(f"{cfg.problems.source}: no valid problem to sample (see {out / 'problems'})")
    sample_problems = out / "problems" / f"{SAMPLE}.parquet"
    write_table([p for _, p in picked], PROBLEM_SCHEMA, sample_problems)

    shared = _SharedOpener(opener)
    trees_path, thoughts_path = out / "trees" / f"{SAMPLE}.parquet", out / "thoughts" / f"{SAMPLE}.parquet"
    polished_path = out / "polished" / f"{SAMPLE}.parquet"
    try:
        stages = {"trees": run_trees(cfg, sample_problems, trees_path, shared)}
        parts = {m: out / "thoughts" / m / f"{SAMPLE}.parquet" for m in cfg.thoughts.methods}
        for method, path in parts.items():
            run_method(cfg, method, sample_problems, path, trees_path, shared)
        stages["thoughts"] = merge_thoughts(cfg, parts, thoughts_path)
        stages["polish"] = run_polish(cfg, thoughts_path, polished_path, shared)
    finally:
        shared.close()

    # Into the caches of the real run's shards that hold the sampled problems.
    caches = {"trees": trees_path, "polished": polished_path} | {f"thoughts/{m}": p for m, p in parts.items()}
    merged = Counter()
    for shard in sorted({s for s, _ in picked}):
        for folder, path in caches.items():
            if cache_path(path).is_file():
                merged[folder] += merge_cache(cache_path(path), run_dir / folder / f"{shard}.cache.sqlite")

    n, total = len(picked), problems["problems"]
    factor = total / n
    journeys = read_table(polished_path, POLISHED_SCHEMA).to_pylist()
    journeys = [r for r in journeys if r["kind"] == "journey" and r["correct"] is not False]
    costs = run_costs(cfg.engines, stages, len(journeys))
    per_problem = _generated_per_problem(out, [p["problem_id"] for _, p in picked])
    wall = {stage: s.get("wall_s", 0.0) for stage, s in stages.items()}
    estimate = {
        "sample_problems": n,
        "dataset_problems": total,
        "shards": math.ceil(total / cfg.problems.shard_size),
        "shard_size": cfg.problems.shard_size,
        "sample": {"costs": costs, "wall_s": wall, "journeys": len(journeys)},
        "per_problem_generated_tokens": _spread(per_problem),
        "dataset": {
            "input_tokens": round(costs["total"]["input_tokens"] * factor),
            "output_tokens": round(costs["total"]["output_tokens"] * factor),
            "usd": None if costs["total"]["usd"] is None else round(costs["total"]["usd"] * factor, 4),
            "by_stage_usd": {
                s: None if c["total"]["usd"] is None else round(c["total"]["usd"] * factor, 4)
                for s, c in costs["by_stage"].items()
            },
            # Spread: the whole dataset at the sample's cheapest and dearest problem.
            "generated_tokens_range": [
                round(min(per_problem) * total),
                round(max(per_problem) * total),
            ],
            "journeys": round(len(journeys) * factor),
            # One job after another at the sample's pace; each job also loads its model once.
            "wall_s": {s: round(w * factor, 1) for s, w in wall.items()},
        },
        "unpriced_engines": costs["unpriced_engines"],
        "cache_entries_merged": dict(merged),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_json(out / "estimate.json", estimate)
    log.info(
        "estimate: %d of %d problems sampled; the dataset: %s input + %s output tokens, %s USD, %s journeys",
        n, total, estimate["dataset"]["input_tokens"], estimate["dataset"]["output_tokens"],
        estimate["dataset"]["usd"], estimate["dataset"]["journeys"],
    )  # fmt: skip
    return estimate
