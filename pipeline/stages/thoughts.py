"""Thoughts stage: journeys (DFS with backtracking) and shortcuts from each tree. CPU only, seeded."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pipeline.answers import extract_boxed
from pipeline.config import Config
from pipeline.tables import NODE_SCHEMA, PROBLEM_SCHEMA, THOUGHT_SCHEMA, read_table, write_stats, write_table
from trees.derive import Thought, Transitions, derive_thoughts, load_transitions
from trees.model import Tree, trees_from_table


def thought_row(thought: Thought, index: int, problem: str, reference: str) -> dict:
    steps = thought.steps
    return {
        "problem_id": thought.problem_id,
        "thought_id": f"{thought.problem_id}/{thought.kind}-{index}",
        "kind": thought.kind,
        "problem": problem,
        "reference": reference,
        "text": thought.text,
        "steps": steps,
        "visits": thought.visits,
        "shortcut": thought.shortcut,
        "n_steps": len(steps),
        "n_backtracks": thought.n_backtracks,
        "answer": extract_boxed(steps[-1]) if steps else None,
        "seed": thought.seed,
    }


def configured_thoughts(tree: Tree, cfg: Config, transitions: Transitions) -> list[Thought]:
    """derive_thoughts with the config's seed and thoughts settings."""
    t = cfg.thoughts
    return derive_thoughts(
        tree,
        seed=cfg.seed,
        journeys_per_tree=t.journeys_per_tree,
        max_trials=t.max_trials,
        detour_depth=t.detour_depth,
        transitions=transitions,
        detour_probability=t.detour_probability,
        aggregation=t.aggregation,
        step_score=t.step_score,
    )


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
            rows.append(thought_row(thought, per_kind[thought.kind], tree.problem, tree.reference))
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
