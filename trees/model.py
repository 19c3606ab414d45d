"""The reasoning-tree model: one row per node, grouped into one tree per problem."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields

import pyarrow as pa

ROOT_ID = 0
VERDICTS = ("correct", "incorrect", "unknown")

# Scores from scorers that annotate without pruning (config `annotate`).
ANNOTATION = pa.struct(
    [("scorer", pa.string()), ("verdict", pa.string()), ("score", pa.float64()), ("rationale", pa.string())]
)

NODE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("node_id", pa.int64()),
        ("parent_id", pa.int64()),
        ("depth", pa.int64()),
        ("step", pa.string()),
        ("is_terminal", pa.bool_()),
        ("answer", pa.string()),
        ("answer_correct", pa.bool_()),
        ("score", pa.float64()),
        ("verdict", pa.string()),
        ("rationale", pa.string()),
        ("scorer", pa.string()),
        ("kept", pa.bool_()),
        ("prune_reason", pa.string()),
        ("tokens", pa.int64()),
        ("model", pa.string()),
        ("annotations", pa.list_(ANNOTATION)),
        ("tree_value", pa.float64()),
        ("reaches_correct", pa.bool_()),
        ("answer_checker", pa.string()),
    ]
)


@dataclass
class Node:
    """One reasoning step. The root (node_id 0, parent_id -1) holds the problem text as its step.

    answer is the extracted final answer of a terminal node (None when it gave none);
    answer_correct is None until checked; answer_checker names what decided it (see
    pipeline/answers.py). prune_reason is "" for kept nodes. score, verdict and
    rationale come from the scorer that pruned; annotations hold other scorers' judgements.
    tree_value is the share of verified correct leaves among the terminal nodes below (and at) the
    node, reaches_correct whether there is any (None: no terminal node below to tell).
    """

    problem_id: str
    node_id: int
    parent_id: int
    depth: int
    step: str
    is_terminal: bool = False
    answer: str | None = None
    answer_correct: bool | None = None
    score: float | None = None
    verdict: str = "unknown"
    rationale: str = ""
    scorer: str = ""
    kept: bool = True
    prune_reason: str = ""
    tokens: int = 0
    model: str = ""
    annotations: list[dict] = field(default_factory=list)
    tree_value: float | None = None
    reaches_correct: bool | None = None
    answer_checker: str = ""

    @property
    def is_root(self) -> bool:
        return self.parent_id < 0


NODE_FIELDS = tuple(f.name for f in fields(Node))
assert NODE_FIELDS == tuple(NODE_SCHEMA.names), "Node and NODE_SCHEMA must list the same columns"


class Tree:
    """Nodes of one problem, indexed by id, with children in generation order."""

    def __init__(self, problem_id: str, nodes: Iterable[Node], reference: str = ""):
        self.problem_id = problem_id
        self.reference = reference
        self.nodes: dict[int, Node] = {}
        self.children: dict[int, list[int]] = {}
        for node in sorted(nodes, key=lambda n: n.node_id):
            if node.node_id in self.nodes:
                raise ValueError(f"problem {problem_id}: duplicate node_id {node.node_id}")
            self.nodes[node.node_id] = node
            self.children.setdefault(node.node_id, [])
        for node in self.nodes.values():
            if node.is_root:
                continue
            if node.parent_id not in self.nodes:
                raise ValueError(
                    f"problem {problem_id}: node {node.node_id} has unknown parent {node.parent_id}"
                )
            self.children[node.parent_id].append(node.node_id)
        if ROOT_ID not in self.nodes or not self.nodes[ROOT_ID].is_root:
            raise ValueError(f"problem {problem_id}: no root node (node_id {ROOT_ID}, parent_id -1)")

    @property
    def root(self) -> Node:
        return self.nodes[ROOT_ID]

    @property
    def problem(self) -> str:
        return self.root.step

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root down to node_id."""
        out = [node_id]
        while not self.nodes[out[-1]].is_root:
            out.append(self.nodes[out[-1]].parent_id)
        return out[::-1]

    def is_leaf(self, node_id: int) -> bool:
        return not self.children[node_id]

    def leaves(self) -> list[int]:
        return [i for i in self.nodes if i != ROOT_ID and self.is_leaf(i)]

    def correct_leaves(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.is_terminal and n.answer_correct]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())


def nodes_to_table(nodes: Iterable[Node]) -> pa.Table:
    rows = [asdict(n) for n in nodes]
    return pa.Table.from_pylist(rows, schema=NODE_SCHEMA)


def trees_from_nodes(nodes: Iterable[Node], references: dict[str, str] | None = None) -> list[Tree]:
    """Group nodes into trees, in order of first appearance of each problem."""
    references = references or {}
    grouped: dict[str, list[Node]] = {}
    for node in nodes:
        grouped.setdefault(node.problem_id, []).append(node)
    return [Tree(pid, group, references.get(pid, "")) for pid, group in grouped.items()]


def trees_from_table(table: pa.Table, references: dict[str, str] | None = None) -> list[Tree]:
    """Group a node table into trees, in order of first appearance of each problem."""
    rows = table.select(list(NODE_FIELDS)).to_pylist()
    return trees_from_nodes((Node(**row) for row in rows), references)
