"""Stepwise supervision (TRL `prompt, completions, labels`) from a tree's root-to-leaf paths, with the
tree values beside the labels as soft Monte-Carlo labels."""

from __future__ import annotations

from trees.model import Node, Tree

PRUNING = "pruning"
TREE = "tree"


def step_label(node: Node, source: str) -> tuple[bool | None, str]:
    """(label, source name) of a step: the pruning scorer's verdict, an annotating scorer's verdict, or
    the tree's own value (does a verified correct leaf lie beneath the step?). None: no label.

    >>> step_label(Node("p", 1, 0, 1, "a", verdict="incorrect", scorer="critic"), "pruning")
    (False, 'critic')
    >>> step_label(Node("p", 1, 0, 1, "a", reaches_correct=True), "tree")
    (True, 'tree')
    """
    if source == TREE:
        return node.reaches_correct, TREE
    if source == PRUNING:
        verdict, name = node.verdict, node.scorer
    else:
        verdict, name = next(
            ((a["verdict"], source) for a in node.annotations if a["scorer"] == source), ("unknown", source)
        )
    return {"correct": True, "incorrect": False}.get(verdict), name


def stepwise_rows(tree: Tree, source: str = PRUNING) -> list[dict]:
    """One row per leaf whose every step has a label from `source`.

    The outcome is ground truth: the final step of a path whose answer does not verify is labelled
    False, whatever the source says. Paths with an unlabelled step (a sibling's duplicate, a scorer
    with no answer, a step with no finished path beneath it) are left out: TRL wants a bool per step.
    """
    rows = []
    for leaf in tree.leaves():
        nodes = [tree.nodes[i] for i in tree.path(leaf)[1:]]
        judged = [step_label(n, source) for n in nodes]
        labels = [label for label, _ in judged]
        if nodes[-1].is_terminal and nodes[-1].answer_correct is False:
            labels[-1] = False
        if any(label is None for label in labels):
            continue
        rows.append(
            {
                "prompt": tree.problem,
                "completions": [n.step for n in nodes],
                "labels": labels,
                "soft_labels": [n.tree_value for n in nodes],
                "problem_id": tree.problem_id,
                "leaf_id": leaf,
                "label_source": ",".join(dict.fromkeys(name for _, name in judged)),
                "answer_correct": nodes[-1].answer_correct,
            }
        )
    return rows
