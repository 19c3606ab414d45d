"""Export stage: gather the polished shards into SFT parquet (TRL conversational) and stats.json."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from pipeline.config import Config
from pipeline.tables import POLISHED_SCHEMA, SFT_SCHEMA, read_table, stats_path, write_json, write_table


def sft_row(row: dict) -> dict:
    return {
        "messages": [
            {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": row["text"]},
        ],
        "problem_id": row["problem_id"],
        "thought_id": row["thought_id"],
        "answer": row["answer"],
        "n_steps": row["n_steps"],
        "n_backtracks": row["n_backtracks"],
        "polish_status": row["polish_status"],
    }


def _sum(parts: list[dict], key: str):
    values = [p[key] for p in parts if p.get(key) is not None]
    if not values:
        return None
    if isinstance(values[0], dict):
        total: Counter = Counter()
        for v in values:
            total.update(v)
        return dict(total)
    if isinstance(values[0], list):
        return [x for v in values for x in v]
    return round(sum(values), 3) if isinstance(values[0], float) else sum(values)


def _stage_stats(paths: list[Path]) -> dict:
    """Shard sidecars of one stage, summed (wall_s: total over shards); rates do not add up, so they are left out."""
    parts = [json.loads(stats_path(p).read_text()) for p in paths if stats_path(p).is_file()]
    keys = dict.fromkeys(k for p in parts for k in p if k != "engines" and not k.endswith("_per_s"))
    return {k: _sum(parts, k) for k in keys}


def run_export(cfg: Config, polished_paths: list[str | Path], out_dir: str | Path) -> dict:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    run_dir = out_dir.parent
    polished_paths = [Path(p) for p in polished_paths]
    rows = [r for p in polished_paths for r in read_table(p, POLISHED_SCHEMA).to_pylist()]
    journeys = [sft_row(r) for r in rows if r["kind"] == "journey"]
    shortcuts = [sft_row(r) for r in rows if r["kind"] == "shortcut"]
    write_table(journeys, SFT_SCHEMA, out_dir / "journey.parquet")
    write_table(shortcuts, SFT_SCHEMA, out_dir / "shortcut.parquet")

    shards = [p.name for p in polished_paths]
    problems = json.loads((run_dir / "problems" / "stats.json").read_text())
    stages = {
        "trees": _stage_stats([run_dir / "trees" / s for s in shards]),
        "thoughts": _stage_stats([run_dir / "thoughts" / s for s in shards]),
        "polish": _stage_stats(polished_paths),
    }
    trees, thoughts, polish = stages["trees"], stages["thoughts"], stages["polish"]
    backtracks = [j["n_backtracks"] for j in journeys]
    tokens = {
        "policy": trees.get("policy_tokens") or 0,
        "scorer": trees.get("scorer_tokens") or 0,
        "annotators": trees.get("annotator_tokens") or 0,
        "polish": polish.get("polish_tokens") or 0,
    }
    tree_tokens = tokens["policy"] + tokens["scorer"] + tokens["annotators"]
    attempted = polish.get("polish_attempted") or 0
    stats = {
        "run": cfg.run,
        "models": {name: e.model for name, e in cfg.engines.items()},
        "problems_in": problems["rows_read"],
        "problems_valid": problems["problems"],
        "problems_rejected": problems["rejected"],
        "shards": len(shards),
        "trees_built": trees.get("trees"),
        "nodes_generated": trees.get("nodes_generated"),
        "nodes_kept": trees.get("nodes_kept"),
        "nodes_pruned": trees.get("nodes_pruned"),
        "prune_reasons": trees.get("prune_reasons"),
        "verdicts": trees.get("verdicts"),
        "correct_leaves": trees.get("correct_leaves"),
        "trees_with_correct_leaf": trees.get("trees_with_correct_leaf"),
        "trees_without_correct_leaf": thoughts.get("trees_without_correct_leaf"),
        "problems_with_journey": len({j["problem_id"] for j in journeys}),
        "journeys": len(journeys),
        "shortcuts": len(shortcuts),
        "journeys_with_backtrack": sum(b > 0 for b in backtracks),
        "backtracks_per_journey": {
            "mean": round(sum(backtracks) / len(backtracks), 3) if backtracks else None,
            "max": max(backtracks, default=None),
            "histogram": {str(k): v for k, v in sorted(Counter(backtracks).items())},
        },
        "tokens": tokens,
        "polish_guard_pass_rate": round(polish["polished"] / attempted, 4) if attempted else None,
        "polish_failed_checks": polish.get("failed_checks"),
        "generated_tokens_per_s_trees": (
            round(tree_tokens / trees["engine_s"], 1) if trees.get("engine_s") else None
        ),
        "wall_s": {
            "problems": problems.get("wall_s"),
            "trees": trees.get("wall_s"),
            "thoughts": thoughts.get("wall_s"),
            "polish": polish.get("wall_s"),
            "export": round(time.perf_counter() - start, 3),
        },
        "stages": stages,
    }
    write_json(run_dir / "stats.json", stats)
    return stats
