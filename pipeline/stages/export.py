"""Export stage: trees and polished thoughts of every shard -> the configured training formats under
sft/, their dataset card, stats.json, and optionally a push to the Hub."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.config import Config
from pipeline.formats.build import format_tables, training_thoughts, write_formats
from pipeline.formats.card import dataset_card
from pipeline.io.hub import push_to_hub, repos_for
from pipeline.io.tables import (
    NODE_SCHEMA,
    POLISHED_SCHEMA,
    PROBLEM_SCHEMA,
    read_table,
    write_json,
    write_text,
)
from pipeline.run_stats import read_problems_stats, read_stage_stats, run_stats
from pipeline.yield_report import check_min_yield, yield_lines, yield_report
from trees.model import Tree, trees_from_table
from trees.values import assign_tree_values

log = logging.getLogger(__name__)


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


def run_export(
    cfg: Config,
    polished_paths: list[str | Path],
    trees_paths: list[str | Path],
    problems_paths: list[str | Path],
    out_dir: str | Path,
) -> dict:
    start = time.perf_counter()
    out_dir, polished_paths = Path(out_dir), [Path(p) for p in polished_paths]
    trees_paths, problems_paths = [Path(p) for p in trees_paths], [Path(p) for p in problems_paths]
    rows = [r for p in polished_paths for r in read_table(p, POLISHED_SCHEMA).to_pylist()]
    journeys, shortcuts = training_thoughts(rows)
    trees = read_trees(trees_paths, problems_paths)
    tables = format_tables(cfg, trees, rows)
    exports = {name: len(table_rows) for name, (table_rows, _) in tables.items()}
    report = yield_report(cfg, trees, len({j["problem_id"] for j in journeys}), exports)
    # Before any file is written: a run under its minimum yield leaves no training files behind.
    check_min_yield(report, cfg.export.min_yield)
    for line in yield_lines(report):
        (log.warning if report["low"] or report["empty_files"] else log.info)("yield: %s", line)
    write_formats(cfg, tables, out_dir)

    thoughts_paths = [out_dir.parent / "thoughts" / p.name for p in polished_paths]
    stages = read_stage_stats(trees_paths, thoughts_paths, polished_paths)
    stats = run_stats(
        cfg, read_problems_stats(problems_paths), len(polished_paths), stages, trees, journeys, shortcuts,
        exports, report, time.perf_counter() - start,
    )  # fmt: skip
    write_text(out_dir / "README.md", dataset_card(cfg.raw, stats, out_dir))
    if cfg.export.push_to_hub:
        repos, repo_id = repos_for(cfg.export.push_to_hub)
        push_to_hub(out_dir, repos, repo_id, f"journey-data run {cfg.run}: {sum(exports.values())} rows")
    write_json(out_dir.parent / "stats.json", stats)
    return stats
