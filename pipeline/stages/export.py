"""Export stage: trees and polished thoughts of every shard -> the configured training formats under
sft/, their dataset card, stats.json, and optionally a push to the Hub."""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from pathlib import Path

from pipeline.config import Config
from pipeline.engines import merge_engine_stats
from pipeline.formats import output_files
from pipeline.formats.card import dataset_card
from pipeline.formats.preference import outcome_pairs, preference_pairs
from pipeline.formats.revision import revision_rows
from pipeline.formats.sft import o1_journey_row, sft_row, sharegpt_info, sharegpt_row
from pipeline.formats.step_preference import step_pairs
from pipeline.formats.stepwise import stepwise_rows
from pipeline.io.hub import push_to_hub, repos_for
from pipeline.io.tables import (
    NODE_SCHEMA,
    O1_JOURNEY_SCHEMA,
    POLISHED_SCHEMA,
    PREFERENCE_SCHEMA,
    PROBLEM_SCHEMA,
    REVISION_SCHEMA,
    SFT_SCHEMA,
    SHAREGPT_SCHEMA,
    STEP_PREFERENCE_SCHEMA,
    STEPWISE_SCHEMA,
    read_table,
    stats_path,
    write_json,
    write_table,
    write_text,
)
from pipeline.yield_report import check_min_yield, yield_lines, yield_report
from trees.model import Tree, trees_from_table
from trees.values import assign_tree_values

log = logging.getLogger(__name__)


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


RUNTIME_FACTS = ("device", "dtype", "cpu", "cpu_isa")


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


def _rng(cfg: Config, tree: Tree, fmt: str) -> random.Random:
    # One stream per tree and format: a tree's rows do not depend on its shard or on other formats.
    return random.Random(f"{cfg.seed}/{fmt}/{tree.problem_id}")


def read_trees(trees_paths: list[Path], problems_paths: list[Path]) -> list[Tree]:
    references = {
        p["problem_id"]: p["answer"]
        for path in problems_paths
        for p in read_table(path, PROBLEM_SCHEMA).to_pylist()
    }
    trees = [t for path in trees_paths for t in trees_from_table(read_table(path, NODE_SCHEMA), references)]
    # The values follow from the checked answers: recomputed, so a trees file whose answers were checked
    # again (or that another tool wrote) never gives step pairs or tree labels from stale values.
    for t in trees:
        assign_tree_values(t)
    return trees


def training_thoughts(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The journeys and shortcuts the SFT formats take: rows whose final answer is known not to verify
    (correct False: an engine method that ran out of budget) and `solution` rows (the outcome
    method's samples, for preference pairs) are left out."""
    usable = [r for r in rows if r.get("correct") is not False]
    return [r for r in usable if r["kind"] == "journey"], [r for r in usable if r["kind"] == "shortcut"]


def format_tables(
    cfg: Config, trees: list[Tree], thoughts: list[dict]
) -> dict[str, tuple[list[dict], object]]:
    """file name -> (rows, schema) for every parquet file of the configured formats."""
    e = cfg.export
    journeys, shortcuts = training_thoughts(thoughts)
    builders = {
        "journey.parquet": lambda: ([sft_row(r) for r in journeys], SFT_SCHEMA),
        "shortcut.parquet": lambda: ([sft_row(r) for r in shortcuts], SFT_SCHEMA),
        "preference.parquet": lambda: (
            [p for t in trees for p in preference_pairs(t, _rng(cfg, t, "preference"), e.pairs_per_problem)]
            + outcome_pairs(thoughts, cfg.seed, cfg.outcome.pairs_per_problem),
            PREFERENCE_SCHEMA,
        ),
        "step_preference.parquet": lambda: (
            [
                p
                for t in trees
                for p in step_pairs(
                    t, _rng(cfg, t, "step_preference"), e.step_pairs_per_problem, e.step_pairs_per_node
                )
            ],
            STEP_PREFERENCE_SCHEMA,
        ),
        "stepwise.parquet": lambda: (
            [r for t in trees for r in stepwise_rows(t, e.step_labels)],
            STEPWISE_SCHEMA,
        ),
        "revision.parquet": lambda: (
            [r for t in trees for r in revision_rows(t, _rng(cfg, t, "revision"), e.revision_max_wrong)],
            REVISION_SCHEMA,
        ),
        "o1_journey.parquet": lambda: ([o1_journey_row(r) for r in journeys], O1_JOURNEY_SCHEMA),
        "journey_sharegpt.parquet": lambda: ([sharegpt_row(r) for r in journeys], SHAREGPT_SCHEMA),
        "shortcut_sharegpt.parquet": lambda: ([sharegpt_row(r) for r in shortcuts], SHAREGPT_SCHEMA),
    }
    return {f: builders[f]() for f in output_files(e.formats) if f in builders}


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


def run_export(
    cfg: Config,
    polished_paths: list[str | Path],
    trees_paths: list[str | Path],
    problems_paths: list[str | Path],
    out_dir: str | Path,
) -> dict:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    run_dir = out_dir.parent
    polished_paths = [Path(p) for p in polished_paths]
    rows = [r for p in polished_paths for r in read_table(p, POLISHED_SCHEMA).to_pylist()]
    journeys, shortcuts = training_thoughts(rows)
    trees_in = read_trees([Path(p) for p in trees_paths], [Path(p) for p in problems_paths])
    tables = format_tables(cfg, trees_in, rows)
    exports = {name: len(table_rows) for name, (table_rows, _) in tables.items()}
    report = yield_report(cfg, trees_in, len({j["problem_id"] for j in journeys}), exports)
    # Before any file is written: a run under its minimum yield leaves no training files behind.
    check_min_yield(report, cfg.export.min_yield)
    for line in yield_lines(report):
        (log.warning if report["low"] or report["empty_files"] else log.info)("yield: %s", line)
    for name, (table_rows, schema) in tables.items():
        write_table(table_rows, schema, out_dir / name)
    if "sharegpt" in cfg.export.formats:
        info = {
            f"{cfg.run}_{f.removesuffix('_sharegpt.parquet')}": sharegpt_info(f)
            for f in exports
            if "sharegpt" in f
        }
        write_json(out_dir / "dataset_info.json", info)

    shards = [p.name for p in polished_paths]
    # The problems stage writes one stats.json beside its shards; the other stages one sidecar per shard.
    problems = json.loads((Path(problems_paths[0]).parent / "stats.json").read_text())
    stages = {
        "trees": stage_stats([Path(p) for p in trees_paths]),
        "thoughts": stage_stats([run_dir / "thoughts" / s for s in shards]),
        "polish": stage_stats(polished_paths),
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
        "runtime": _runtime(stages),
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
        "tree_value_agreement": _agreement(trees.get("tree_value_agreement") or {}),
        "scorer_problems": trees.get("scorer_problems"),
        # Endpoint trouble over the whole run: HTTP calls repeated, requests that still failed.
        "engine_retries": _engine_total(stages, "retries"),
        "engine_failed_requests": _engine_total(stages, "failed"),
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
        "exports": exports,
        "yield_report": report,
        "yields": {
            "trees_with_correct_leaf_share": _share(
                sum(bool(t.correct_leaves()) for t in trees_in), trees_in
            ),
            **{f"{name} rows per tree": _share(n, trees_in) for name, n in exports.items()},
        },
        "thought_lengths": {"journey": _lengths(journeys), "shortcut": _lengths(shortcuts)},
    }
    write_text(out_dir / "README.md", dataset_card(cfg.raw, stats, out_dir))
    if cfg.export.push_to_hub:
        repos, repo_id = repos_for(cfg.export.push_to_hub)
        push_to_hub(out_dir, repos, repo_id, f"journey-data run {cfg.run}: {sum(exports.values())} rows")
    write_json(run_dir / "stats.json", stats)
    return stats
