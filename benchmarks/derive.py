"""derive_trees_per_s: journey + shortcut derivation on synthetic 200-node trees, one core."""

from __future__ import annotations

import random
from time import perf_counter

from benchmarks import Figure
from pipeline.config import PROJECT_ROOT, load
from pipeline.methods.tree import configured_thoughts
from trees.derive import load_transitions
from trees.model import ROOT_ID, Node, Tree

TREE_SIZE = 200
_WORDS = (
    "add subtract the total of apples we get so then each number is equal to sum difference "
    "three four five six seven times half more left count step answer check carry"
).split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi))).capitalize() + "."


def synthetic_tree(rng: random.Random, problem_id: str, size: int = TREE_SIZE, max_depth: int = 8) -> Tree:
    """A random tree shaped like a critic-pruned search: 2-4 children per expanded node, verdicts
    and rationales on every step, terminal leaves with checked answers, at least one correct."""
    nodes = [Node(problem_id, ROOT_ID, -1, 0, _text(rng, 10, 30))]
    open_ids = [ROOT_ID]
    while len(nodes) < size and open_ids:
        parent = nodes[open_ids.pop(rng.randrange(len(open_ids)))]
        for _ in range(min(rng.randint(2, 4), size - len(nodes))):
            verdict = rng.choices(("correct", "incorrect", "unknown"), (5, 4, 1))[0]
            node = Node(
                problem_id,
                len(nodes),
                parent.node_id,
                parent.depth + 1,
                _text(rng, 8, 40),
                score={"correct": 1.0, "incorrect": 0.0}.get(verdict),
                verdict=verdict,
                rationale=_text(rng, 6, 25) if verdict != "unknown" else "",
                kept=verdict == "correct",
            )
            nodes.append(node)
            if node.depth < max_depth:
                open_ids.append(node.node_id)
    has_children = {n.parent_id for n in nodes}
    leaves = [n for n in nodes if n.node_id not in has_children and n.node_id != ROOT_ID]
    for leaf in leaves:
        if rng.random() < 0.7:
            leaf.is_terminal = True
            leaf.answer_correct = rng.random() < 0.3
            leaf.answer = "4" if leaf.answer_correct else str(rng.randint(0, 9))
    if not any(n.answer_correct for n in leaves):
        leaf = rng.choice(leaves)
        leaf.is_terminal, leaf.answer_correct, leaf.answer = True, True, "4"
    return Tree(problem_id, nodes, "4")


def run(n_trees: int, repeats: int = 3) -> Figure:
    cfg = load()
    transitions = load_transitions(PROJECT_ROOT / cfg.thoughts.transitions)
    rng = random.Random(cfg.seed)
    trees = [synthetic_tree(rng, f"synthetic-{i}") for i in range(n_trees)]
    best = float("inf")
    for _ in range(repeats):
        start = perf_counter()
        thoughts = [configured_thoughts(tree, cfg, transitions) for tree in trees]
        best = min(best, perf_counter() - start)
    journeys = [th for per_tree in thoughts for th in per_tree if th.kind == "journey"]
    backtracks = sum(th.n_backtracks for th in journeys) / len(journeys)
    return Figure(
        "derive_trees_per_s",
        round(n_trees / best, 1),
        ">= 2000",
        [
            f"{n_trees} trees of {TREE_SIZE} nodes in {best * 1e3:.1f} ms (best of {repeats}, one process); "
            f"{len(journeys)} journeys, {backtracks:.1f} backtracks each, thoughts config defaults"
        ],
    )
