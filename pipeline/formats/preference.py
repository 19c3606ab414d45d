"""Preference pairs (TRL conversational `prompt, chosen, rejected`) from one tree's leaves."""

from __future__ import annotations

import random

from pipeline.formats.paths import assistant, path_text, user, wrong_leaves
from trees.model import Tree


def preference_pairs(tree: Tree, rng: random.Random, pairs: int) -> list[dict]:
    """Up to `pairs` pairs: chosen leads to a verified correct leaf, rejected to a wrong leaf.

    Pairs are drawn without replacement from the distinct (chosen text, rejected text) pairs, so
    sibling leaves that wrote the same steps do not make a duplicate pair.
    """
    candidates: dict[tuple[str, str], tuple[int, int]] = {}
    for good in tree.correct_leaves():
        for bad in wrong_leaves(tree):
            candidates.setdefault((path_text(tree, good), path_text(tree, bad)), (good, bad))
    chosen = rng.sample(sorted(candidates), min(pairs, len(candidates)))
    return [
        {
            "prompt": user(tree.problem),
            "chosen": assistant(good_text),
            "rejected": assistant(bad_text),
            "problem_id": tree.problem_id,
            "chosen_leaf": candidates[good_text, bad_text][0],
            "rejected_leaf": candidates[good_text, bad_text][1],
            "chosen_answer": tree.nodes[candidates[good_text, bad_text][0]].answer,
            "rejected_answer": tree.nodes[candidates[good_text, bad_text][1]].answer,
        }
        for good_text, bad_text in chosen
    ]
