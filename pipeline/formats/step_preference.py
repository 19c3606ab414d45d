"""Step-level preference pairs (process-level DPO): at a node whose children include a step that leads
to a verified correct leaf and one whose finished paths all fail, the first is chosen over the second.

TRL's conversational preference format, `prompt, chosen, rejected`: the prompt is the problem and both
completions are the path so far followed by the one step. TRL renders a prompt that ends with an
assistant turn as a second assistant turn, not as its continuation, so the path so far goes into both
completions instead; its tokens are the same in both, so their log-probabilities cancel in the DPO loss
and only the two steps are compared. The path so far and the two steps are also columns of their own.
"""

from __future__ import annotations

import random

from pipeline.formats.paths import assistant, path_text, user
from trees.model import ROOT_ID, Node, Tree


def _leads_on(node: Node) -> bool:
    return node.reaches_correct is True


def _dead_end(node: Node) -> bool:
    # A finished path beneath, none of them correct. A step with nothing finished beneath it (pruned,
    # cut at max depth) is not known to be wrong, so it is never the rejected one.
    return node.reaches_correct is False


def _join(prefix: str, step: str) -> str:
    return f"{prefix}\n\n{step}" if prefix else step


def node_pairs(tree: Tree, node_id: int) -> list[tuple[int, int]]:
    """(chosen child, rejected child) pairs at one node, without two pairs of the same two step texts.

    >>> t = Tree("p", [Node("p", 0, -1, 0, "q"),
    ...     Node("p", 1, 0, 1, "a", is_terminal=True, answer_correct=True),
    ...     Node("p", 2, 0, 1, "b", is_terminal=True, answer_correct=False),
    ...     Node("p", 3, 0, 1, "b", is_terminal=True, answer_correct=False),
    ...     Node("p", 4, 0, 1, "c", kept=False)])
    >>> from trees.values import assign_tree_values; assign_tree_values(t)
    >>> node_pairs(t, 0)
    [(1, 2)]
    """
    children = [tree.nodes[c] for c in tree.children[node_id]]
    seen: set[tuple[str, str]] = set()
    pairs = []
    for good in filter(_leads_on, children):
        for bad in filter(_dead_end, children):
            texts = (good.step.strip(), bad.step.strip())
            if texts[0] != texts[1] and texts not in seen:
                seen.add(texts)
                pairs.append((good.node_id, bad.node_id))
    return pairs


def step_pairs(tree: Tree, rng: random.Random, per_tree: int, per_node: int) -> list[dict]:
    """Up to `per_node` pairs at each node and `per_tree` in all, drawn with `rng` without replacement;
    rows in tree order (node, then chosen and rejected ids). Needs the tree values (trees/values.py)."""
    drawn = []
    for node_id in sorted(tree.nodes):
        at_node = node_pairs(tree, node_id)
        drawn += [(node_id, *p) for p in rng.sample(at_node, min(per_node, len(at_node)))]
    rows = []
    for node_id, good, bad in sorted(rng.sample(drawn, min(per_tree, len(drawn)))):
        prefix = "" if node_id == ROOT_ID else path_text(tree, node_id)
        chosen, rejected = tree.nodes[good], tree.nodes[bad]
        rows.append(
            {
                "prompt": user(tree.problem),
                "chosen": assistant(_join(prefix, chosen.step)),
                "rejected": assistant(_join(prefix, rejected.step)),
                "problem_id": tree.problem_id,
                "prefix": prefix,
                "chosen_step": chosen.step,
                "rejected_step": rejected.step,
                "parent_id": node_id,
                "depth": chosen.depth,
                "chosen_id": good,
                "rejected_id": bad,
                "chosen_value": chosen.tree_value,
                "rejected_value": rejected.tree_value,
                "chosen_verdict": chosen.verdict,
                "rejected_verdict": rejected.verdict,
            }
        )
    return rows
