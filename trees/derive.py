"""Derive long thoughts from a reasoning tree: the shortcut and the journey (DFS with backtracking).

A *shortcut* is the best-scored root-to-correct-leaf path. A *journey* walks the shortcut and, at
each on-path node, makes a few detours into off-path children (wrong turns first); each detour
ends in a reflection that backtracks to the on-path node. All randomness comes from the
`random.Random` passed in or derived from the seed, so the same tree and seed give the same thought.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from trees.model import ROOT_ID, Node, Tree

RATIONALE_CHARS = 300
STEP_CHARS = 80
_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "\"')]}»”’"


@dataclass(frozen=True)
class Transitions:
    """Transition phrases; see prompts/transitions.yaml."""

    reflect: tuple[str, ...]
    reflect_no_rationale: tuple[str, ...]
    return_: tuple[str, ...]


@dataclass
class Segment:
    """One piece of a thought: a node's step, or a reflection on the detour ending at node_id."""

    kind: str
    text: str
    node_id: int


@dataclass
class Thought:
    """A long thought and the walk over the tree that produced it."""

    problem_id: str
    kind: str
    segments: list[Segment]
    visits: list[int]
    shortcut: list[int]
    n_backtracks: int
    seed: int

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.segments)

    @property
    def steps(self) -> list[str]:
        return [s.text for s in self.segments if s.kind == "step"]

    @property
    def answer_node(self) -> int:
        return self.shortcut[-1]


def load_transitions(path: str | Path) -> Transitions:
    """Read and validate a transitions YAML file; ValueError names the offending key."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with keys reflect, reflect_no_rationale, return")
    lists = {}
    for key in ("reflect", "reflect_no_rationale", "return"):
        value = data.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise ValueError(f"{path}: '{key}' must be a non-empty list of non-empty strings")
        lists[key] = tuple(v.strip() for v in value)
    # A missing or stray slot would either drop the rationale or leak "{rationale}" into the data.
    if not all("{rationale}" in t for t in lists["reflect"]):
        raise ValueError(f"{path}: every 'reflect' phrase needs a {{rationale}} slot")
    if any("{rationale}" in t or "{step}" in t for t in lists["reflect_no_rationale"]):
        raise ValueError(f"{path}: 'reflect_no_rationale' phrases take no slots")
    if any("{rationale}" in t for t in lists["return"]):
        raise ValueError(f"{path}: 'return' phrases take only a {{step}} slot")
    return Transitions(lists["reflect"], lists["reflect_no_rationale"], lists["return"])


def is_correct_leaf(node: Node) -> bool:
    """A terminal node whose answer verified: where journeys end and detours must not."""
    return node.is_terminal and node.answer_correct is True


def _judged_wrong(node: Node) -> bool:
    return node.verdict == "incorrect" or node.answer_correct is False


def _node_score(node: Node, step_score: str = "scorer") -> float:
    if step_score == "tree":
        return 0.5 if node.tree_value is None else node.tree_value
    if node.verdict == "incorrect":
        return 0.0
    if node.score is None or math.isnan(node.score):
        return 0.5
    return node.score


AGGREGATIONS = ("min", "prod", "last")
STEP_SCORES = ("scorer", "tree")


def path_score(tree: Tree, path: list[int], aggregation: str = "min", step_score: str = "scorer") -> float:
    """A path's score from its steps' scores (Lightman et al.): the weakest step (min), all steps
    together (prod), or the last step (last). A step's score is the pruning scorer's, or with
    step_score "tree" the share of verified correct leaves beneath it (trees/values.py).

    >>> t = Tree("p", [Node("p", 0, -1, 0, "q"), Node("p", 1, 0, 1, "a", score=0.5), Node("p", 2, 1, 2, "b", score=0.8)])
    >>> [round(path_score(t, [0, 1, 2], a), 2) for a in AGGREGATIONS]
    [0.5, 0.4, 0.8]
    """
    if step_score not in STEP_SCORES:
        raise ValueError(f"unknown step score {step_score!r} (expected one of {STEP_SCORES})")
    scores = [_node_score(tree.nodes[i], step_score) for i in path if i != ROOT_ID] or [0.5]
    if aggregation == "min":
        return min(scores)
    if aggregation == "prod":
        return math.prod(scores)
    if aggregation == "last":
        return scores[-1]
    raise ValueError(f"unknown path aggregation {aggregation!r} (expected one of {AGGREGATIONS})")


def choose_shortcut(
    tree: Tree, rng: random.Random, aggregation: str = "min", step_score: str = "scorer"
) -> list[int] | None:
    """The best-scored root-to-correct-leaf path (ties broken by rng), or None without one."""
    paths = [tree.path(leaf) for leaf in sorted(tree.correct_leaves()) if leaf != ROOT_ID]
    if not paths:
        return None
    scores = [path_score(tree, p, aggregation, step_score) for p in paths]
    best = max(scores)
    return rng.choice([p for p, s in zip(paths, scores) if s == best])


def _squash(text: str, limit: int) -> str:
    """Collapse whitespace and cut to about `limit` chars at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "..."


def _end_sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.rstrip(_CLOSERS).endswith(_SENTENCE_END) else text + "."


def reflection_text(rationale: str, back_to: str, rng: random.Random, transitions: Transitions) -> str:
    """A backtrack's reflection: a reflect phrase around the rationale (or one without), then a
    return phrase naming the step gone back to. Shared by the tree walk and the engine methods."""
    rationale = _squash(rationale or "", RATIONALE_CHARS)
    if rationale:
        opening = rng.choice(transitions.reflect).replace("{rationale}", rationale)
    else:
        opening = rng.choice(transitions.reflect_no_rationale)
    step = _squash(back_to, STEP_CHARS)
    closing = rng.choice(transitions.return_).replace("{step}", step)
    return f"{_end_sentence(opening)} {_end_sentence(closing)}"


def _reflection(
    tree: Tree, detour: list[int], back_to: int, rng: random.Random, transitions: Transitions
) -> str:
    judged = next((i for i in detour if tree.nodes[i].verdict == "incorrect"), detour[-1])
    return reflection_text(tree.nodes[judged].rationale or "", tree.nodes[back_to].step, rng, transitions)


def _detour_candidates(
    tree: Tree, u: int, on_path_child: int, rng: random.Random, max_trials: int, probability: float
) -> list[int]:
    # A detour must say something new: no empty steps, and no repeat of the step the walk takes
    # next or of another detour's first step (samples often repeat each other).
    seen = {tree.nodes[on_path_child].step.strip()}
    off_path = []
    for c in tree.children[u]:
        text = tree.nodes[c].step.strip()
        if c != on_path_child and text and text not in seen and not is_correct_leaf(tree.nodes[c]):
            seen.add(text)
            off_path.append(c)
    wrong = [c for c in off_path if _judged_wrong(tree.nodes[c])]
    rest = [c for c in off_path if not _judged_wrong(tree.nodes[c])]
    rng.shuffle(wrong)
    rng.shuffle(rest)
    chosen: list[int] = []
    for c in wrong + rest:
        if len(chosen) == max_trials:
            break
        if probability >= 1.0 or rng.random() < probability:
            chosen.append(c)
    return chosen


def _descend(tree: Tree, start: int, rng: random.Random, depth: int) -> list[int]:
    """A random downward path from start, at most `depth` nodes, never into a correct leaf."""
    detour = [start]
    while len(detour) < depth:
        options = [
            c
            for c in tree.children[detour[-1]]
            if tree.nodes[c].step.strip() and not is_correct_leaf(tree.nodes[c])
        ]
        if not options:
            break
        detour.append(rng.choice(options))
    return detour


def _check_shortcut(tree: Tree, shortcut: list[int]) -> None:
    end = shortcut[-1] if shortcut else None
    if end not in tree.nodes or end == ROOT_ID or shortcut != tree.path(end):
        raise ValueError(f"problem {tree.problem_id}: shortcut {shortcut} is not a root path")
    if not is_correct_leaf(tree.nodes[end]):
        raise ValueError(f"problem {tree.problem_id}: shortcut ends at {end}, not a correct leaf")


def _step(tree: Tree, node_id: int) -> Segment:
    return Segment("step", tree.nodes[node_id].step.strip(), node_id)


def derive_journey(
    tree: Tree,
    shortcut: list[int],
    rng: random.Random,
    *,
    max_trials: int,
    detour_depth: int,
    transitions: Transitions,
    detour_probability: float = 1.0,
    seed: int = 0,
) -> Thought:
    """Walk the shortcut, detouring into off-path children and backtracking with a reflection."""
    _check_shortcut(tree, shortcut)
    if max_trials < 0 or detour_depth < 1 or not 0.0 <= detour_probability <= 1.0:
        raise ValueError("need max_trials >= 0, detour_depth >= 1, 0 <= detour_probability <= 1")
    segments: list[Segment] = []
    visits = [ROOT_ID]
    backtracks = 0
    for u, on_path_child in zip(shortcut, shortcut[1:]):
        for start in _detour_candidates(tree, u, on_path_child, rng, max_trials, detour_probability):
            detour = _descend(tree, start, rng, detour_depth)
            segments.extend(_step(tree, i) for i in detour)
            segments.append(Segment("reflection", _reflection(tree, detour, u, rng, transitions), detour[-1]))
            visits.extend(detour)
            visits.append(u)
            backtracks += 1
        segments.append(_step(tree, on_path_child))
        visits.append(on_path_child)
    return Thought(tree.problem_id, "journey", segments, visits, list(shortcut), backtracks, seed)


def derive_shortcut(tree: Tree, shortcut: list[int], seed: int) -> Thought:
    """The shortcut as a thought: its steps only, no detours."""
    _check_shortcut(tree, shortcut)
    segments = [_step(tree, i) for i in shortcut[1:]]
    return Thought(tree.problem_id, "shortcut", segments, list(shortcut), list(shortcut), 0, seed)


def derive_thoughts(
    tree: Tree,
    *,
    seed: int,
    journeys_per_tree: int,
    max_trials: int,
    detour_depth: int,
    transitions: Transitions,
    detour_probability: float = 1.0,
    aggregation: str = "min",
    step_score: str = "scorer",
) -> list[Thought]:
    """Distinct journeys of the tree (up to journeys_per_tree), then the first one's shortcut.

    Journey k draws from its own stream seeded by (seed, problem_id, k), so a tree's thoughts do not
    depend on which other trees are processed or in what order. A tree without a correct leaf
    gives [].
    """
    if journeys_per_tree < 0:
        raise ValueError("journeys_per_tree must be >= 0")
    first_rng = random.Random(f"{seed}:{tree.problem_id}:0")
    first_shortcut = choose_shortcut(tree, first_rng, aggregation, step_score)
    if first_shortcut is None:
        return []
    thoughts: list[Thought] = []
    seen: set[tuple[int, ...]] = set()
    for k in range(journeys_per_tree):
        if k == 0:
            rng, shortcut = first_rng, first_shortcut
        else:
            rng = random.Random(f"{seed}:{tree.problem_id}:{k}")
            shortcut = choose_shortcut(tree, rng, aggregation, step_score)
        journey = derive_journey(
            tree,
            shortcut,
            rng,
            max_trials=max_trials,
            detour_depth=detour_depth,
            transitions=transitions,
            detour_probability=detour_probability,
            seed=seed,
        )
        if tuple(journey.visits) not in seen:
            seen.add(tuple(journey.visits))
            thoughts.append(journey)
    thoughts.append(derive_shortcut(tree, first_shortcut, seed))
    return thoughts
