"""Root-to-node paths of a tree as text and as TRL conversational messages."""

from __future__ import annotations

from trees.model import Tree


def path_steps(tree: Tree, node_id: int) -> list[str]:
    """The steps from the root's first child down to node_id (the root holds the problem)."""
    return [tree.nodes[i].step for i in tree.path(node_id)[1:]]


def path_text(tree: Tree, node_id: int) -> str:
    # Joined like a derived thought's segments, so attempts read like the SFT thoughts.
    return "\n\n".join(path_steps(tree, node_id))


def user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def assistant(content: str) -> list[dict]:
    return [{"role": "assistant", "content": content}]


def wrong_leaves(tree: Tree) -> list[int]:
    """Terminal nodes whose answer was checked and did not verify."""
    return [i for i, n in tree.nodes.items() if n.is_terminal and n.answer_correct is False]
