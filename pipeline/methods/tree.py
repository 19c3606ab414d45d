"""Method tree: journeys by DFS with backtracking, and shortcuts, walked on each grown tree
(trees/derive.py). CPU only and seeded; it reads the shard's trees instead of calling engines."""

from __future__ import annotations

from pipeline.answers import extract_boxed
from pipeline.config import Config
from pipeline.io.tables import ThoughtRow
from trees.derive import Thought, Transitions, derive_thoughts
from trees.model import Tree

READS = "trees"  # the thoughts stage hands this method the shard's trees, not an engine pool


def thought_row(thought: Thought, index: int, problem: dict) -> dict:
    """The thoughts-table row of the index-th thought of its kind on `problem`'s tree."""
    steps = thought.steps
    return ThoughtRow.of(
        problem,
        thought_id=f"{thought.problem_id}/{thought.kind}-{index}",
        kind=thought.kind,
        text=thought.text,
        steps=steps,
        answer=extract_boxed(steps[-1]) if steps else None,
        seed=thought.seed,
        method="tree",
        correct=True,  # the walk ends at a verified correct leaf
        n_backtracks=thought.n_backtracks,
        n_reflections=thought.n_backtracks,  # each backtrack leaves the detour with one reflection
        visits=thought.visits,
        shortcut=thought.shortcut,
    ).as_row()  # engine_tokens 0: the tree's tokens are counted by the trees stage


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
