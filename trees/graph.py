"""Trees as networkx graphs: export for graph tools (GraphML, node-link JSON) and shape statistics.

One file per tree: networkx.read_graphml returns only the first graph of a GraphML file, Gephi and
Cytoscape open a file as one network, and node-link JSON (networkx, d3) holds one graph per document.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import networkx as nx

from trees.model import ROOT_ID, Node, Tree, trees_from_nodes

LABEL_CHARS = 60


def to_digraph(tree: Tree) -> nx.DiGraph:
    """The tree as parent -> child edges; nodes keyed by node_id, with every Node field as attributes.

    GraphML has no null and no lists: None fields are left out, annotations become a JSON string.
    `label` (the step, cut) gives graph tools a short text to show on each node.

    >>> g = to_digraph(Tree("p", [Node("p", 0, -1, 0, "q"), Node("p", 1, 0, 1, "a", score=0.5)]))
    >>> list(g.edges), g.graph, g.nodes[1]["score"], "answer" in g.nodes[1]
    ([(0, 1)], {'problem_id': 'p', 'reference': ''}, 0.5, False)
    """
    g = nx.DiGraph(problem_id=tree.problem_id, reference=tree.reference)
    for node in tree:
        attrs = {k: v for k, v in asdict(node).items() if v is not None}
        attrs["annotations"] = json.dumps(node.annotations, ensure_ascii=False)
        g.add_node(node.node_id, label=node.step[:LABEL_CHARS], **attrs)
    g.add_edges_from((n.parent_id, n.node_id) for n in tree if not n.is_root)
    return g


def _file_name(problem_id: str, suffix: str) -> str:
    if re.fullmatch(r"[\w-][\w.-]{0,99}", problem_id):
        return problem_id + suffix
    # Ids with slashes, spaces or too long: a readable stem plus a hash, so two ids never share a file.
    stem = re.sub(r"[^\w.-]", "_", problem_id)[:80].lstrip(".")
    return f"{stem}-{hashlib.sha1(problem_id.encode()).hexdigest()[:8]}{suffix}"


def _write(
    trees: Iterable[Tree], out_dir: str | Path, suffix: str, dump: Callable[[nx.DiGraph, Path], None]
) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for tree in trees:
        paths.append(out_dir / _file_name(tree.problem_id, suffix))
        dump(to_digraph(tree), paths[-1])
    return paths


def write_graphml(trees: Iterable[Tree], out_dir: str | Path) -> list[Path]:
    """One <problem_id>.graphml per tree; read back with networkx.read_graphml(path, node_type=int)."""
    return _write(trees, out_dir, ".graphml", nx.write_graphml)


def _dump_json(g: nx.DiGraph, path: Path) -> None:
    # edges="edges" spelled out: networkx 3.4 and 3.5 default to "links" with a FutureWarning.
    data = nx.node_link_data(g, edges="edges")
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_json(trees: Iterable[Tree], out_dir: str | Path) -> list[Path]:
    """One <problem_id>.json per tree (node-link data, the same attributes as the GraphML); read back
    with networkx.node_link_graph(json.load(f), edges="edges")."""
    return _write(trees, out_dir, ".json", _dump_json)


WRITERS = {"graphml": write_graphml, "json": write_json}


def _measure(tree: Tree) -> tuple[dict[int, int], list[int], int]:
    """Depth of every node, kept children of every expanded node (one with children), leaves."""
    g = to_digraph(tree)
    kept = [sum(g.nodes[c]["kept"] for c in g.successors(n)) for n in g if g.out_degree(n)]
    leaves = sum(1 for n in g if n != ROOT_ID and not g.out_degree(n))
    return nx.shortest_path_length(g, ROOT_ID), kept, leaves


def tree_shape(tree: Tree) -> dict:
    """Depth, leaves, what pruning left of each expansion, and the routes to a verified answer.

    depth and shortest_correct_path count steps below the root; shortest_correct_path is None when
    no leaf verifies. Every expansion generates w children, so only the kept ones tell trees apart.

    >>> t = Tree("p", [Node("p", 0, -1, 0, "q"), Node("p", 1, 0, 1, "a"), Node("p", 2, 0, 1, "b", kept=False),
    ...     Node("p", 3, 1, 2, "c", is_terminal=True, answer_correct=True)])
    >>> tree_shape(t)
    {'nodes': 4, 'depth': 2, 'leaves': 2, 'kept_children_mean': 1.0, 'kept_children_max': 1,
     'correct_paths': 1, 'shortest_correct_path': 2}
    """
    depth, kept, leaves = _measure(tree)
    correct = [depth[i] for i in tree.correct_leaves()]
    return {
        "nodes": len(depth),
        "depth": max(depth.values()),
        "leaves": leaves,
        "kept_children_mean": round(sum(kept) / len(kept), 2) if kept else None,
        "kept_children_max": max(kept, default=None),
        "correct_paths": len(correct),
        "shortest_correct_path": min(correct, default=None),
    }


def _histogram(counts: Counter) -> dict[str, int]:
    # String keys: what the stats sidecar's JSON holds, so shards' histograms add up key by key.
    return {str(k): counts[k] for k in sorted(counts)}


def shape_stats(nodes: Iterable[Node]) -> dict:
    """A shard's tree shapes as histograms (value -> count), which stay right when shards are summed,
    unlike means and maxima: trees by depth, expanded nodes by kept children, and trees with a verified
    leaf by the steps of their shortest correct path."""
    tree_depth, kept_children, shortest = Counter(), Counter(), Counter()
    for tree in trees_from_nodes(nodes):
        depth, kept, _ = _measure(tree)
        tree_depth[max(depth.values())] += 1
        kept_children.update(kept)
        correct = [depth[i] for i in tree.correct_leaves()]
        if correct:
            shortest[min(correct)] += 1
    return {
        "tree_depth": _histogram(tree_depth),
        "kept_children": _histogram(kept_children),
        "shortest_correct_path": _histogram(shortest),
    }
