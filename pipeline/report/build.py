"""Report stage: a run's problems, trees and (polished) thoughts -> a static site under out_dir."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.report.html import safe_name
from pipeline.report.index_page import index_page, index_row
from pipeline.report.summary import leaf_outcomes, summarize, summary_html
from pipeline.report.tree_page import problem_page
from pipeline.tables import (
    NODE_SCHEMA,
    POLISHED_SCHEMA,
    PROBLEM_SCHEMA,
    THOUGHT_SCHEMA,
    read_table,
    write_text,
)
from trees.model import Tree, trees_from_table


def _rows(paths: list[Path], schema) -> list[dict]:
    return [r for p in paths for r in read_table(p, schema).to_pylist()]


def load_run(run_dir: Path) -> tuple[list[dict], dict[str, Tree], list[dict], dict]:
    """(problems, trees by problem id, thoughts, stats) of a run; the polished thoughts where the
    polish stage ran, else the derived ones; missing stages give empty lists."""
    problems = _rows(sorted(run_dir.glob("problems/shard-*.parquet")), PROBLEM_SCHEMA)
    references = {p["problem_id"]: p["answer"] for p in problems}
    trees: dict[str, Tree] = {}
    for path in sorted(run_dir.glob("trees/shard-*.parquet")):
        for tree in trees_from_table(read_table(path, NODE_SCHEMA), references):
            trees[tree.problem_id] = tree
    polished = sorted(run_dir.glob("polished/shard-*.parquet"))
    if polished:
        thoughts = _rows(polished, POLISHED_SCHEMA)
    else:
        thoughts = _rows(sorted(run_dir.glob("thoughts/shard-*.parquet")), THOUGHT_SCHEMA)
    stats_file = run_dir / "stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    return problems, trees, thoughts, stats


def run_report(run_dir: str | Path, out_dir: str | Path) -> dict:
    """Write out_dir/index.html and out_dir/problems/<slug>-<hash>.html; return small stats."""
    start = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    problems, trees, thoughts, stats = load_run(run_dir)
    by_problem: dict[str, list[dict]] = {}
    for t in thoughts:
        by_problem.setdefault(t["problem_id"], []).append(t)
    problem_rows = {p["problem_id"]: p for p in problems}
    # Every problem that reached any stage gets a page, in input order.
    ids = list(dict.fromkeys([*problem_rows, *trees, *by_problem]))
    pages_dir = out_dir / "problems"
    pages_dir.mkdir(parents=True, exist_ok=True)
    index_rows = []
    for pid in ids:
        problem, tree, own = problem_rows.get(pid), trees.get(pid), by_problem.get(pid, [])
        name = safe_name(pid)
        write_text(pages_dir / name, problem_page(pid, problem, tree, own))
        tree_stats = {}
        if tree is not None:
            correct, wrong = leaf_outcomes(tree)
            pruned = sum(1 for n in tree if not n.kept)
            tree_stats = {"nodes": len(tree), "pruned": pruned, "correct": correct, "incorrect": wrong}
        text = problem["problem"] if problem else (tree.problem if tree else "")
        index_rows.append(index_row(pid, name, text, tree_stats, own))
    summary = summarize(problems, trees, thoughts, stats)
    title = f"Journey report: {summary['run'] or run_dir.name}"
    index = index_page(title, summary_html(summary), index_rows)
    write_text(out_dir / "index.html", index)
    return {
        "problem_pages": len(ids),
        "pages_written": len(ids) + 1,
        "index_bytes": len(index.encode("utf-8")),
        "wall_s": round(time.perf_counter() - start, 3),
    }
