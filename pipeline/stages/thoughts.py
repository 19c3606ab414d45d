"""Thoughts stage: one method's long thoughts for a shard, and the merge of the configured methods.

Method tree (journeys by DFS with backtracking, and shortcuts, from each tree) is CPU only and
seeded; the other methods (pipeline/methods/) read only the problems and call engines, through a
response cache beside their output, so a rerun or a resume after a kill pays nothing twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.answers import AnswerChecker
from pipeline.config import Config
from pipeline.engines import EnginePool, Opener, cache_path, merge_engine_stats, open_engine
from pipeline.io.tables import (
    NODE_SCHEMA,
    PROBLEM_SCHEMA,
    THOUGHT_SCHEMA,
    read_table,
    stats_path,
    write_stats,
    write_table,
)
from pipeline.methods import method_module
from pipeline.methods.tree import configured_thoughts, thought_row
from trees.derive import load_transitions
from trees.model import trees_from_table


def run_thoughts(
    cfg: Config, trees_path: str | Path, problems_path: str | Path, out_path: str | Path
) -> dict:
    start = time.perf_counter()
    problems = {p["problem_id"]: p for p in read_table(problems_path, PROBLEM_SCHEMA).to_pylist()}
    references = {pid: p["answer"] for pid, p in problems.items()}
    trees = trees_from_table(read_table(trees_path, NODE_SCHEMA), references)
    transitions = load_transitions(cfg.thoughts.transitions)
    rows, without_correct = [], []
    for tree in trees:
        thoughts = configured_thoughts(tree, cfg, transitions)
        if not thoughts:
            without_correct.append(tree.problem_id)
        per_kind: Counter = Counter()
        for thought in thoughts:
            rows.append(thought_row(thought, per_kind[thought.kind], problems[tree.problem_id]))
            per_kind[thought.kind] += 1
    write_table(rows, THOUGHT_SCHEMA, out_path)
    journeys = [r for r in rows if r["kind"] == "journey"]
    stats = {
        "trees": len(trees),
        "trees_without_correct_leaf": len(without_correct),
        "problems_without_correct_leaf": without_correct,
        "journeys": len(journeys),
        "shortcuts": sum(r["kind"] == "shortcut" for r in rows),
        "journeys_with_backtrack": sum(r["n_backtracks"] > 0 for r in journeys),
        "backtracks": sum(r["n_backtracks"] for r in journeys),
        "backtracks_per_journey": [r["n_backtracks"] for r in journeys],
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_stats(out_path, stats)
    return stats


def run_method(
    cfg: Config,
    method: str,
    problems_path: str | Path,
    out_path: str | Path,
    trees_path: str | Path | None = None,
    opener: Opener = open_engine,
) -> dict:
    """One method's thoughts for one shard: tree from the trees shard, the others from the problems."""
    module = method_module(method)  # unknown names fail here, before any model loads
    if module.READS == "trees":
        if trees_path is None:
            raise ValueError(f"method {method} reads the trees shard: give --trees")
        return run_thoughts(cfg, trees_path, problems_path, out_path)
    start = time.perf_counter()
    problems = read_table(problems_path, PROBLEM_SCHEMA).to_pylist()
    with (
        EnginePool(cfg.engines, cache_path(out_path), opener) as pool,
        AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
    ):
        rows, stats = module.build(cfg, problems, pool, checker)
        engines = pool.stats(list(pool.open))
    write_table(rows, THOUGHT_SCHEMA, out_path)
    stats = {**stats, "engines": engines, "wall_s": round(time.perf_counter() - start, 3)}
    write_stats(out_path, stats)
    return stats


def merge_thoughts(cfg: Config, parts: dict[str, str | Path], out_path: str | Path) -> dict:
    """thoughts/<shard>.parquet: the methods' shards concatenated in `thoughts.methods` order, their
    stats under `methods`. The tree's figures also stay at the top level, where export reads them."""
    order = {m: i for i, m in enumerate(cfg.thoughts.methods)}
    names = sorted(parts, key=lambda m: order.get(m, len(order)))
    tables = [read_table(parts[m], THOUGHT_SCHEMA) for m in names]
    write_table(pa.concat_tables(tables) if tables else [], THOUGHT_SCHEMA, out_path)
    per_method = {m: _read_stats(parts[m]) for m in names}
    stats = {
        **per_method.get("tree", {}),
        "thoughts": sum(t.num_rows for t in tables),
        "engine_tokens": sum(p.get("engine_tokens", 0) for p in per_method.values()),
        "methods": per_method,
        "engines": merge_engine_stats(p.get("engines", {}) for p in per_method.values()),
        "wall_s": round(sum(p.get("wall_s", 0.0) for p in per_method.values()), 3),
        "slurm_jobs": [j for p in per_method.values() for j in p.get("slurm_jobs", [])],
    }
    write_stats(out_path, stats)
    return stats


def _read_stats(path: str | Path) -> dict:
    sidecar = stats_path(path)
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}
