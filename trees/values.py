"""Step values estimated by the tree itself: the share of verified correct leaves beneath each node.

Every terminal node already had its answer checked, so each node's subtree is a free Monte-Carlo
estimate of how often the policy reaches the right answer from there (no extra engine calls). A
node with no terminal node beneath it (pruned before finishing) has no value: None, not 0.
"""

from __future__ import annotations

from collections import Counter

from trees.model import ROOT_ID, Tree


def assign_tree_values(tree: Tree) -> None:
    """Set tree_value and reaches_correct on every node of the tree, bottom-up.

    >>> from trees.model import Node
    >>> t = Tree("p", [Node("p", 0, -1, 0, "q"), Node("p", 1, 0, 1, "a"),
    ...     Node("p", 2, 1, 2, "b", is_terminal=True, answer="5", answer_correct=True),
    ...     Node("p", 3, 1, 2, "c", is_terminal=True, answer="6", answer_correct=False),
    ...     Node("p", 4, 0, 1, "d", kept=False)])
    >>> assign_tree_values(t)
    >>> [(n.node_id, n.tree_value, n.reaches_correct) for n in t]
    [(0, 0.5, True), (1, 0.5, True), (2, 1.0, True), (3, 0.0, False), (4, None, None)]
    """
    counts: dict[int, tuple[int, int]] = {}  # node id -> (terminal nodes beneath, correct ones)
    # Children have larger ids than their parents (ids are assigned in generation order), so
    # descending ids visit every child before its parent.
    for node_id in sorted(tree.nodes, reverse=True):
        node = tree.nodes[node_id]
        terminal, correct = (1, int(node.answer_correct is True)) if node.is_terminal else (0, 0)
        for child in tree.children[node_id]:
            t, c = counts[child]
            terminal, correct = terminal + t, correct + c
        counts[node_id] = (terminal, correct)
        node.tree_value = correct / terminal if terminal else None
        node.reaches_correct = correct > 0 if terminal else None


AGREEMENT_KEYS = ("steps", "agree", "disagree", "scorer_correct_tree_dead", "scorer_incorrect_tree_alive")


def agreement(tree: Tree) -> Counter:
    """How the pruning scorer's verdicts compare with the tree's own values, over the steps that have
    both (a verdict correct/incorrect and a terminal node beneath them).

    >>> from trees.model import Node
    >>> t = Tree("p", [Node("p", 0, -1, 0, "q"),
    ...     Node("p", 1, 0, 1, "a", verdict="correct", is_terminal=True, answer_correct=False),
    ...     Node("p", 2, 0, 1, "b", verdict="incorrect", is_terminal=True, answer_correct=True)])
    >>> assign_tree_values(t)
    >>> dict(agreement(t))
    {'steps': 2, 'disagree': 2, 'scorer_correct_tree_dead': 1, 'scorer_incorrect_tree_alive': 1}
    """
    out: Counter = Counter()
    for node in tree:
        if node.node_id == ROOT_ID or node.verdict not in ("correct", "incorrect"):
            continue
        if node.reaches_correct is None:
            continue
        out["steps"] += 1
        scorer_says = node.verdict == "correct"
        if scorer_says == node.reaches_correct:
            out["agree"] += 1
            continue
        out["disagree"] += 1
        out["scorer_correct_tree_dead" if scorer_says else "scorer_incorrect_tree_alive"] += 1
    return out
