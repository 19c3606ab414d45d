"""Tests for trees.graph: GraphML and node-link JSON round trips, tree shapes, and the `graph` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from pipeline.io.tables import NODE_SCHEMA, PROBLEM_SCHEMA, write_table
from trees.graph import shape_stats, to_digraph, tree_shape, write_graphml, write_json
from trees.model import Node, Tree

ROOT = Path(__file__).resolve().parent.parent


def nodes(pid: str = "p") -> list[Node]:
    """Root, two kept steps (one with two verified leaves below at different depths), one pruned step."""
    annotation = {"scorer": "prm", "verdict": "correct", "score": 0.9, "rationale": "ok"}
    return [
        Node(pid, 0, -1, 0, "What is 1 + 1?"),
        Node(pid, 1, 0, 1, "1 + 1 = 2", score=0.8, verdict="correct", annotations=[annotation]),
        Node(pid, 2, 0, 1, "1 + 1 = 3", verdict="incorrect", kept=False, prune_reason="judged incorrect"),
        Node(pid, 3, 0, 1, "Count on from 1", score=0.6, verdict="correct"),
        Node(pid, 4, 1, 2, "so \\boxed{2}", is_terminal=True, answer="2", answer_correct=True, tokens=5),
        Node(pid, 5, 3, 2, "1, then 2"),
        Node(pid, 6, 3, 2, "1, then 3", kept=False, prune_reason="over the keep limit"),
        Node(pid, 7, 5, 3, "\\boxed{2}", is_terminal=True, answer="2", answer_correct=True),
    ]


def tree(pid: str = "p") -> Tree:
    return Tree(pid, nodes(pid), reference="2")


def expected_attrs(node: Node) -> dict:
    """A node's attributes as the graph files hold them: no None values, annotations as JSON."""
    attrs = {k: v for k, v in node.__dict__.items() if v is not None}
    return {**attrs, "annotations": json.dumps(node.annotations), "label": node.step}


def check_graph(g: nx.DiGraph, t: Tree) -> None:
    assert g.is_directed() and set(g.nodes) == set(t.nodes)
    assert set(g.edges) == {(n.parent_id, n.node_id) for n in t if not n.is_root}
    assert {k: g.graph[k] for k in ("problem_id", "reference")} == {
        "problem_id": t.problem_id,
        "reference": "2",
    }
    for node in t:
        assert g.nodes[node.node_id] == expected_attrs(node)
    assert json.loads(g.nodes[1]["annotations"]) == t.nodes[1].annotations


def test_to_digraph_keeps_every_field_and_the_parent_edges():
    check_graph(to_digraph(tree()), tree())


def test_graphml_round_trip(tmp_path):
    (path,) = write_graphml([tree()], tmp_path)
    assert path == tmp_path / "p.graphml"
    check_graph(nx.read_graphml(path, node_type=int), tree())


def test_json_round_trip(tmp_path):
    (path,) = write_json([tree()], tmp_path)
    assert path == tmp_path / "p.json"
    check_graph(nx.node_link_graph(json.loads(path.read_text()), edges="edges"), tree())


def test_one_file_per_tree_and_unsafe_ids_get_distinct_names(tmp_path):
    paths = write_graphml([tree("a/b"), tree("a_b"), tree("a b")], tmp_path)
    assert len(set(paths)) == 3 and all(p.parent == tmp_path and p.is_file() for p in paths)
    assert paths[1].name == "a_b.graphml"
    assert [nx.read_graphml(p).graph["problem_id"] for p in paths] == ["a/b", "a_b", "a b"]


def test_tree_shape():
    assert tree_shape(tree()) == {
        "nodes": 8,
        "depth": 3,
        "leaves": 4,  # 2, 4, 6, 7: pruned nodes are leaves too
        "kept_children_mean": 1.25,  # root 2 of 3, node 1: 1, node 3: 1 of 2, node 5: 1
        "kept_children_max": 2,
        "correct_paths": 2,
        "shortest_correct_path": 2,
    }
    lone = tree_shape(Tree("q", [Node("q", 0, -1, 0, "?")]))
    assert lone["depth"] == 0 and lone["kept_children_mean"] is None and lone["shortest_correct_path"] is None


def test_shape_stats_are_histograms_over_the_shard():
    stump = [Node("q", 0, -1, 0, "?"), Node("q", 1, 0, 1, "no", is_terminal=True, answer_correct=False)]
    assert shape_stats(nodes() + stump) == {
        "tree_depth": {"1": 1, "3": 1},
        "kept_children": {"1": 4, "2": 1},
        "shortest_correct_path": {"2": 1},
    }


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture
def shard(tmp_path) -> tuple[Path, Path]:
    trees = tmp_path / "trees.parquet"
    write_table([n.__dict__ for n in nodes("p") + nodes("q")], NODE_SCHEMA, trees)
    problems = tmp_path / "problems.parquet"
    rows = [
        {"problem_id": pid, "problem": "What is 1 + 1?", "answer": "2", "source": "", "meta": "{}"}
        for pid in "pq"
    ]
    write_table(rows, PROBLEM_SCHEMA, problems)
    return trees, problems


def test_cli_writes_one_graph_per_tree(shard, tmp_path):
    trees, problems = shard
    out = tmp_path / "graphs"
    proc = cli("graph", "--trees", str(trees), "--problems", str(problems), "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(out / "p.graphml"), str(out / "q.graphml")]
    check_graph(nx.read_graphml(out / "q.graphml", node_type=int), tree("q"))


def test_cli_writes_one_problem_as_json(shard, tmp_path):
    trees, problems = shard
    out = tmp_path / "graphs"
    args = ["--problems", str(problems), "--out-dir", str(out), "--format", "json", "--problem-id", "q"]
    proc = cli("graph", "--trees", str(trees), *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(out / "q.json")] and [p.name for p in out.iterdir()] == ["q.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trees", "missing.parquet"], "error: no such file: missing.parquet"),
        (["--problem-id", "nope"], "error: no tree for problem 'nope' in"),
        (["--trees", "PROBLEMS"], "missing columns"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(shard, tmp_path, args, message):
    trees, problems = shard
    args = [str(problems) if a == "PROBLEMS" else a for a in args]
    if "--trees" not in args:
        args = ["--trees", str(trees), *args]
    proc = cli("graph", *args, "--out-dir", str(tmp_path / "graphs"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and message in proc.stderr
    assert not (tmp_path / "graphs").exists()
