"""Preference pairs (TRL conversational `prompt, chosen, rejected`): from one tree's leaves (source
`tree`), and from complete solutions sampled per problem by the outcome method (source `outcome`)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from pipeline.formats.paths import assistant, path_text, user, wrong_leaves
from trees.model import Tree


def _pick(candidates: Iterable[tuple[str, str]], rng: random.Random, pairs: int) -> list[tuple[str, str]]:
    """Up to `pairs` distinct (chosen text, rejected text) pairs, drawn without replacement."""
    distinct = sorted(set(candidates))
    return rng.sample(distinct, min(pairs, len(distinct)))


def preference_pairs(tree: Tree, rng: random.Random, pairs: int) -> list[dict]:
    """Up to `pairs` pairs: chosen leads to a verified correct leaf, rejected to a wrong leaf.

    Pairs are drawn without replacement from the distinct (chosen text, rejected text) pairs, so
    sibling leaves that wrote the same steps do not make a duplicate pair.
    """
    leaves: dict[tuple[str, str], tuple[int, int]] = {}
    for good in tree.correct_leaves():
        for bad in wrong_leaves(tree):
            leaves.setdefault((path_text(tree, good), path_text(tree, bad)), (good, bad))
    rows = []
    for good_text, bad_text in _pick(leaves, rng, pairs):
        good, bad = leaves[good_text, bad_text]
        rows.append(
            {
                "prompt": user(tree.problem),
                "chosen": assistant(good_text),
                "rejected": assistant(bad_text),
                "problem_id": tree.problem_id,
                "chosen_leaf": good,
                "rejected_leaf": bad,
                "chosen_answer": tree.nodes[good].answer,
                "rejected_answer": tree.nodes[bad].answer,
                "source": "tree",
            }
        )
    return rows


def outcome_pairs(thoughts: list[dict], seed: int, pairs: int) -> list[dict]:
    """Up to `pairs` pairs per problem from the outcome method's solutions: chosen verifies, rejected
    does not; no duplicate (chosen, rejected) texts; the same seed draws the same pairs."""
    by_problem: dict[str, list[dict]] = {}
    for r in thoughts:
        if r["kind"] == "solution" and r.get("method") == "outcome" and r["text"].strip():
            by_problem.setdefault(r["problem_id"], []).append(r)
    rows = []
    for pid, solutions in sorted(by_problem.items()):
        answers = {(r["text"], r["correct"]): r["answer"] for r in solutions}
        good = {r["text"] for r in solutions if r["correct"]}
        bad = {r["text"] for r in solutions if not r["correct"]}
        # One stream per problem: a problem's pairs do not depend on its shard or on other problems.
        rng = random.Random(f"{seed}/preference-outcome/{pid}")
        for good_text, bad_text in _pick(((g, b) for g in good for b in bad if g != b), rng, pairs):
            rows.append(
                {
                    "prompt": user(solutions[0]["problem"]),
                    "chosen": assistant(good_text),
                    "rejected": assistant(bad_text),
                    "problem_id": pid,
                    "chosen_leaf": None,  # solutions are no tree nodes
                    "rejected_leaf": None,
                    "chosen_answer": answers[good_text, True],
                    "rejected_answer": answers[bad_text, False],
                    "source": "outcome",
                }
            )
    return rows
