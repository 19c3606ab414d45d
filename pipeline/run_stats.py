"""A run's stats.json: the stages' shard sidecars summed, and the run's headline figures from them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.config import Config
from pipeline.costs import run_costs
from pipeline.engines import merge_engine_stats
from pipeline.io.tables import stats_path
from trees.model import Tree


def _is_rate(key: str) -> bool:
    """Figures that do not add up over shards (a sum of two shards' pass rates means nothing)."""
    return key == "yield" or key.endswith(("_rate", "_share", "_per_s"))


def _sum(parts: list[dict], key: str):
    values = [p[key] for p in parts if p.get(key) is not None]
    if not values:
        return None
    if key == "engines":  # counters add up, facts (dtype, device) keep their distinct values
        return merge_engine_stats(values)
    if isinstance(values[0], dict):
        # Key by key, nested ones too (the thoughts stage keeps each method's figures under `methods`).
        keys = dict.fromkeys(k for v in values for k in v if not _is_rate(k))
        return {k: _sum(values, k) for k in keys}
    if isinstance(values[0], list):
        return [x for v in values for x in v]
    return round(sum(values), 3) if isinstance(values[0], float) else sum(values)


def stage_stats(paths: list[Path]) -> dict:
    """Shard sidecars of one stage, summed (wall_s: total over shards); rates do not add up, so they are left out."""
    parts = [json.loads(stats_path(p).read_text()) for p in paths if stats_path(p).is_file()]
    keys = dict.fromkeys(k for p in parts for k in p if not _is_rate(k))
    return {k: _sum(parts, k) for k in keys}


def _agreement(counts: dict) -> dict:
    steps = counts.get("steps", 0)
    return {**counts, "share_disagree": round(counts.get("disagree", 0) / steps, 3) if steps else None}


RUNTIME_FACTS = ("device", "dtype", "cpu", "cpu_isa", "engine_process")


def _runtime(stages: dict) -> dict:
    """Where each in-process engine ran, over every stage that loaded it: the same config runs at
    another speed on another machine (float32 on a CPU without bfloat16 instructions, say)."""
    merged = merge_engine_stats(
        {n: {k: e[k] for k in RUNTIME_FACTS if k in e} for n, e in stage.get("engines", {}).items()}
        for stage in stages.values()
    )
    return {n: facts for n, facts in merged.items() if facts}


def _engine_total(stages: dict, key: str) -> int:
    return sum(e.get(key, 0) for stage in stages.values() for e in stage.get("engines", {}).values())


def _lengths(rows: list[dict]) -> dict:
    chars = [len(r["text"]) for r in rows]
    steps = [r["n_steps"] for r in rows]
    if not rows:
        return {
            "n": 0,
            "chars_min": None,
            "chars_mean": None,
            "chars_max": None,
            "steps_mean": None,
            "steps_max": None,
        }
    return {
        "n": len(rows),
        "chars_min": min(chars),
        "chars_mean": round(sum(chars) / len(chars), 1),
        "chars_max": max(chars),
        "steps_mean": round(sum(steps) / len(steps), 2),
        "steps_max": max(steps),
    }


def _share(n: int, trees: list[Tree]) -> float | None:
    return round(n / len(trees), 3) if trees else None


def _trees_figures(trees: dict) -> dict:
    return {
        "trees_built": trees.get("trees"),
        "nodes_generated": trees.get("nodes_generated"),
        "nodes_kept": trees.get("nodes_kept"),
        "nodes_pruned": trees.get("nodes_pruned"),
        "prune_reasons": trees.get("prune_reasons"),
        "verdicts": trees.get("verdicts"),
        "tree_value_agreement": _agreement(trees.get("tree_value_agreement") or {}),
        "scorer_problems": trees.get("scorer_problems"),
    }


def _journey_figures(journeys: list[dict], shortcuts: list[dict]) -> dict:
    backtracks = [j["n_backtracks"] for j in journeys]
    return {
        "problems_with_journey": len({j["problem_id"] for j in journeys}),
        "journeys": len(journeys),
        "shortcuts": len(shortcuts),
        "journeys_with_backtrack": sum(b > 0 for b in backtracks),
        "backtracks_per_journey": {
            "mean": round(sum(backtracks) / len(backtracks), 3) if backtracks else None,
            "max": max(backtracks, default=None),
            "histogram": {str(k): v for k, v in sorted(Counter(backtracks).items())},
        },
    }


def _token_figures(trees: dict, polish: dict) -> dict:
    tokens = {
        "policy": trees.get("policy_tokens") or 0,
        "scorer": trees.get("scorer_tokens") or 0,
        "annotators": trees.get("annotator_tokens") or 0,
        "polish": polish.get("polish_tokens") or 0,
    }
    tree_tokens = tokens["policy"] + tokens["scorer"] + tokens["annotators"]
    attempted = polish.get("polish_attempted") or 0
    return {
        "tokens": tokens,
        "polish_guard_pass_rate": round(polish["polished"] / attempted, 4) if attempted else None,
        "polish_failed_checks": polish.get("failed_checks"),
        "generated_tokens_per_s_trees": (
            round(tree_tokens / trees["engine_s"], 1) if trees.get("engine_s") else None
        ),
    }


def read_stage_stats(trees_paths: list[Path], thoughts_paths: list[Path], polished_paths: list[Path]) -> dict:
    """Each stage's shard sidecars, summed."""
    return {
        "trees": stage_stats(trees_paths),
        "thoughts": stage_stats(thoughts_paths),
        "polish": stage_stats(polished_paths),
    }


def read_problems_stats(problems_paths: list[Path]) -> dict:
    # The problems stage writes one stats.json beside its shards; the other stages one sidecar per shard.
    return json.loads((problems_paths[0].parent / "stats.json").read_text())


def run_stats(
    cfg: Config,
    problems: dict,
    shards: int,
    stages: dict,
    trees: list[Tree],
    journeys: list[dict],
    shortcuts: list[dict],
    exports: dict[str, int],
    report: dict,
    export_s: float,
) -> dict:
    """stats.json: the headline figures first, then each stage's summed sidecars under `stages`."""
    return {
        "run": cfg.run,
        "models": {name: e.model for name, e in cfg.engines.items()},
        "runtime": _runtime(stages),
        "problems_in": problems["rows_read"],
        "problems_valid": problems["problems"],
        "problems_rejected": problems["rejected"],
        "shards": shards,
        **_trees_figures(stages["trees"]),
        # Endpoint trouble over the whole run: HTTP calls repeated, requests that still failed.
        "engine_retries": _engine_total(stages, "retries"),
        "engine_failed_requests": _engine_total(stages, "failed"),
        "correct_leaves": stages["trees"].get("correct_leaves"),
        "trees_with_correct_leaf": stages["trees"].get("trees_with_correct_leaf"),
        "trees_without_correct_leaf": stages["thoughts"].get("trees_without_correct_leaf"),
        **_journey_figures(journeys, shortcuts),
        **_token_figures(stages["trees"], stages["polish"]),
        "wall_s": {
            "problems": problems.get("wall_s"),
            "trees": stages["trees"].get("wall_s"),
            "thoughts": stages["thoughts"].get("wall_s"),
            "polish": stages["polish"].get("wall_s"),
            "export": round(export_s, 3),
        },
        "costs": run_costs(cfg.engines, stages, len(journeys)),
        "stages": stages,
        "exports": exports,
        "yield_report": report,
        "yields": {
            "trees_with_correct_leaf_share": _share(sum(bool(t.correct_leaves()) for t in trees), trees),
            **{f"{name} rows per tree": _share(n, trees) for name, n in exports.items()},
        },
        "thought_lengths": {"journey": _lengths(journeys), "shortcut": _lengths(shortcuts)},
    }
