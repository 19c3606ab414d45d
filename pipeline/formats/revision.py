"""Revision trajectories (Snell et al., "Scaling LLM test-time compute"): wrong attempts, then a right one.

For each correct attempt, x ~ U{0..max_wrong} wrong attempts of the same tree come first: the one
closest to the correct attempt by edit distance sits last before it, the others in random order.
Rows are TRL conversational prompt-completion, so the loss falls on the correct attempt only.
"""

from __future__ import annotations

import random

from rapidfuzz.distance import Levenshtein

from pipeline.formats.paths import assistant, path_text, user, wrong_leaves
from trees.model import Tree

REVISE = "That attempt may contain a mistake. Revise it and give the answer again."


def order_wrong(correct: str, wrong: dict[int, str], x: int, rng: random.Random) -> list[int]:
    """x of the wrong attempts (id -> text), the closest to `correct` last, the others shuffled.

    >>> order_wrong("2+2=4", {1: "2+2=5", 2: "3*7=9", 3: "1+1=3"}, 2, random.Random(0))[-1]
    1
    """
    if x == 0:
        return []
    closest = min(wrong, key=lambda i: (Levenshtein.distance(correct, wrong[i]), i))
    others = rng.sample(sorted(set(wrong) - {closest}), x - 1)
    return [*others, closest]


def revision_rows(tree: Tree, rng: random.Random, max_wrong: int) -> list[dict]:
    wrong = {i: path_text(tree, i) for i in wrong_leaves(tree)}
    rows = []
    for good in tree.correct_leaves():
        text = path_text(tree, good)
        # Draw x even when the tree has fewer wrong attempts, so the stream of draws does not depend on it.
        x = min(rng.randint(0, max_wrong), len(wrong))
        order = order_wrong(text, wrong, x, rng)
        prompt = user(tree.problem)
        for i in order:
            prompt += assistant(wrong[i]) + user(REVISE)
        rows.append(
            {
                "prompt": prompt,
                "completion": assistant(text),
                "problem_id": tree.problem_id,
                "correct_leaf": good,
                "wrong_leaves": order,
                "n_wrong": len(order),
            }
        )
    return rows
