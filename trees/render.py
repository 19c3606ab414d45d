"""Plain-text views of a tree and of any stage's parquet, for a terminal."""

from __future__ import annotations

import pyarrow as pa

from trees.model import ROOT_ID, Tree


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _label(node, order: list[int], shortcut: set[int]) -> str:
    parts = [f"#{node.node_id}"]
    if node.node_id in shortcut:
        parts.append("*")
    if order:
        parts.append("walk " + ",".join(str(i) for i in order))
    parts.append(node.verdict)
    if node.score is not None:
        parts.append(f"score {node.score:.2f}")
    if node.is_terminal:
        ok = {True: "correct", False: "wrong"}.get(node.answer_correct, "unchecked")
        parts.append(f"answer {node.answer!r} {ok}")
    if not node.kept:
        parts.append(f"pruned: {node.prune_reason}")
    return "[" + " | ".join(parts) + "]"


def render_tree(
    tree: Tree, visits: list[int] | None = None, shortcut: list[int] | None = None, width: int = 100
) -> str:
    """The tree as indented lines: verdicts, scores, answers, prune reasons; `*` marks the shortcut
    and `walk i,j` the positions at which a journey's walk visits the node.

    >>> from trees.model import Node
    >>> t = Tree("p", [Node("p", 0, -1, 0, "What is 1 + 1?"), Node("p", 1, 0, 1, "1 + 1 = 3", verdict="incorrect",
    ...     kept=False, prune_reason="judged incorrect"), Node("p", 2, 0, 1, "\\\\boxed{2}", is_terminal=True,
    ...     answer="2", answer_correct=True, verdict="correct")])
    >>> print(render_tree(t, visits=[0, 1, 0, 2], shortcut=[0, 2]))
    What is 1 + 1?  [#0 | * | walk 0,2 | unknown]
      1 + 1 = 3  [#1 | walk 1 | incorrect | pruned: judged incorrect]
      \\boxed{2}  [#2 | * | walk 3 | correct | answer '2' correct]
    """
    visits = visits or []
    on_path = set(shortcut or [])
    lines = []

    def walk(node_id: int, indent: int) -> None:
        node = tree.nodes[node_id]
        order = [i for i, v in enumerate(visits) if v == node_id]
        text = _clip(node.step, max(20, width - 2 * indent))
        lines.append(f"{'  ' * indent}{text}  {_label(node, order, on_path)}")
        for child in tree.children[node_id]:
            walk(child, indent + 1)

    walk(ROOT_ID, 0)
    return "\n".join(lines)


def summarize_table(table: pa.Table, rows: int = 3, width: int = 80) -> str:
    """Row count, columns with types, and the first rows with long values cut."""
    lines = [f"{table.num_rows} rows, {table.num_columns} columns"]
    lines += [f"  {field.name}: {field.type}" for field in table.schema]
    for i, row in enumerate(table.slice(0, rows).to_pylist()):
        lines.append(f"row {i}:")
        lines += [f"  {key} = {_clip(repr(value), width)}" for key, value in row.items()]
    return "\n".join(lines)
