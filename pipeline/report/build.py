"""Report stage: a run's problems, trees and (polished) thoughts -> a static site under out_dir."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.io.tables import (
    NODE_SCHEMA,
    POLISHED_SCHEMA,
    PROBLEM_SCHEMA,
    THOUGHT_SCHEMA,
    read_table,
    write_text,
)
from pipeline.report.diagnostics import diagnostics_html, yield_section
from pipeline.report.html import safe_name
from pipeline.report.index_page import index_page, index_row
from pipeline.report.marks import Limits
from pipeline.report.methods import method_figures, methods_html
from pipeline.report.summary import generated_nodes, leaf_outcomes, summarize, summary_html
from pipeline.report.tree_page import problem_page
from trees.model import Tree, trees_from_table

# Thought columns added with the thoughts methods. Runs from before them still open (a compare of an
# older run with a newer one needs that): their rows read as the tree walk's, methods.py's defaults.
LATER_COLUMNS = ("method", "n_reflections", "correct", "engine_tokens")


def _rows(paths: list[Path], schema: pa.Schema) -> list[dict]:
    rows = []
    for path in paths:
        present = set(pq.read_schema(path).names)
        absent = [n for n in LATER_COLUMNS if n in schema.names and n not in present]
        kept = pa.schema([f for f in schema if f.name not in absent])
        rows += [{**dict.fromkeys(absent), **r} for r in read_table(path, kept).to_pylist()]
    return rows


class RunFilesError(FileNotFoundError):
    """A run directory, or a file the report needs in it, is missing; the message names the path."""


@dataclass
class Run:
    """What the report reads of a run directory."""

    problems: list[dict]
    trees: dict[str, Tree]
    thoughts: list[dict]
    stats: dict
    limits: Limits
    outcome_pairs: int | None = None  # preference pairs export made of the outcome method's samples

    def methods(self) -> list[dict]:
        """The per-method figures (methods.py) of this run."""
        return method_figures(self.thoughts, self.trees, self.stats, self.outcome_pairs)


def _limits(run_dir: Path, trees: dict[str, Tree]) -> Limits:
    """The policy limits from the run's merged config.yaml. A run without one (a report built by hand
    on copied tables) takes the deepest node as the max depth: a path that stops there without an
    answer was most likely cut."""
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        policy = (yaml.safe_load(config_file.read_text()) or {}).get("policy") or {}
        return Limits(policy.get("max_depth"), policy.get("max_step_tokens"))
    depths = [n.depth for t in trees.values() for n in t]
    return Limits(max(depths, default=None))


def _outcome_pairs(run_dir: Path) -> int | None:
    """Rows of sft/preference.parquet made from sampled solutions; None before export or without
    the preference format."""
    path = run_dir / "sft" / "preference.parquet"
    # Files from before the outcome method have no source column: all their pairs came from trees.
    if not path.is_file() or "source" not in pq.read_schema(path).names:
        return None
    sources = pq.read_table(path, columns=["source"]).column("source").to_pylist()
    return sum(s == "outcome" for s in sources)


def load_run(run_dir: Path) -> Run:
    """A run's problems, trees by problem id, thoughts, stats and policy limits; the polished thoughts
    where the polish stage ran, else the derived ones; missing stages give empty lists."""
    if not run_dir.is_dir():
        raise RunFilesError(f"run directory {run_dir} not found")
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
    return Run(problems, trees, thoughts, stats, _limits(run_dir, trees), _outcome_pairs(run_dir))


def run_report(run_dir: str | Path, out_dir: str | Path) -> dict:
    """Write out_dir/index.html and out_dir/problems/<slug>-<hash>.html; return small stats."""
    start = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = load_run(run_dir)
    problems, trees, thoughts = run.problems, run.trees, run.thoughts
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
        write_text(pages_dir / name, problem_page(pid, problem, tree, own, run.limits))
        tree_stats = {}
        if tree is not None:
            correct, wrong = leaf_outcomes(tree)
            pruned = sum(1 for n in tree if not n.kept)
            tree_stats = {
                "nodes": generated_nodes(tree),
                "pruned": pruned,
                "correct": correct,
                "incorrect": wrong,
            }
        text = problem["problem"] if problem else (tree.problem if tree else "")
        reference = problem["answer"] if problem else (tree.reference if tree else "")
        index_rows.append(index_row(pid, name, text, reference, tree_stats, own))
    summary = summarize(problems, trees, thoughts, run.stats)
    title = f"Journey report: {summary['run'] or run_dir.name}"
    top = yield_section(run.stats) + summary_html(summary) + methods_html(run.methods())
    top += diagnostics_html(run.stats)
    index = index_page(title, top, index_rows)
    write_text(out_dir / "index.html", index)
    return {
        "problem_pages": len(ids),
        "pages_written": len(ids) + 1,
        "index_bytes": len(index.encode("utf-8")),
        "wall_s": round(time.perf_counter() - start, 3),
    }
