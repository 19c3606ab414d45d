"""Stepwise supervision (TRL `prompt, completions, labels`) from a tree's root-to-leaf paths."""

from __future__ import annotations

from trees.model import Node, Tree

PRUNING = "pruning"


def step_verdict(node: Node, source: str) -> tuple[str, str]:
    """(verdict, scorer name) of a step from `source`: the pruning scorer, or an annotating scorer's name."""
    if source == PRUNING:
        return node.verdict, node.scorer
    for note in node.annotations:
        if note["scorer"] == source:
            return note["verdict"], source
    return "unknown", source


def stepwise_rows(tree: Tree, source: str = PRUNING) -> list[dict]:
    """One row per leaf whose every step has a correct/incorrect verdict from `source`.

    Paths with an unjudged step (a sibling's duplicate, a scorer with no answer) are left out:
    TRL wants a bool for every step.
    """
    rows = []
    for leaf in tree.leaves():
        nodes = [tree.nodes[i] for i in tree.path(leaf)[1:]]
        judged = [step_verdict(n, source) for n in nodes]
        if any(v not in ("correct", "incorrect") for v, _ in judged):
            continue
        rows.append(
            {
                "prompt": tree.problem,
                "completions": [n.step for n in nodes],
                "labels": [v == "correct" for v, _ in judged],
                "problem_id": tree.problem_id,
                "leaf_id": leaf,
                "label_source": ",".join(dict.fromkeys(name for _, name in judged)),
                "answer_correct": nodes[-1].answer_correct,
            }
        )
    return rows
