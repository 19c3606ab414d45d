"""Tests for trees.derive: shortcuts and journeys derived from hand-built and random trees."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from trees.derive import (
    Thought,
    choose_shortcut,
    derive_journey,
    derive_shortcut,
    derive_thoughts,
    is_correct_leaf,
    load_transitions,
    path_score,
)
from trees.model import Node, Tree

TRANSITIONS_YAML = Path(__file__).resolve().parents[1] / "prompts" / "transitions.yaml"
TRANSITIONS = load_transitions(TRANSITIONS_YAML)


def make_tree(parents: dict[int, int], pid: str = "p", **attrs: dict[int, object]) -> Tree:
    """Tree from {child: parent}; keyword args map an attribute to {node_id: value}.

    Shorthands: correct=[ids] makes verified terminal leaves, wrong=[ids] terminal leaves with a
    wrong answer, incorrect=[ids] nodes the critic judged incorrect.
    """
    correct = attrs.pop("correct", [])
    wrong = attrs.pop("wrong", [])
    incorrect = attrs.pop("incorrect", [])
    nodes = [Node(pid, 0, -1, 0, "Problem: what is 1 + 1?")]
    depth = {0: 0}
    for child in sorted(parents):
        depth[child] = depth[parents[child]] + 1
    for child, parent in sorted(parents.items()):
        node = Node(pid, child, parent, depth[child], f"step {child}")
        if child in correct:
            node.is_terminal, node.answer_correct = True, True
            node.step = f"step {child} \\boxed{{2}}"
        if child in wrong:
            node.is_terminal, node.answer_correct = True, False
        if child in incorrect:
            node.verdict, node.rationale = "incorrect", f"Step {child} is wrong."
        for name, values in attrs.items():
            if child in values:
                setattr(node, name, values[child])
        nodes.append(node)
    return Tree(pid, nodes)


def journey(tree: Tree, seed: int = 0, **kw) -> Thought:
    kw.setdefault("max_trials", 2)
    kw.setdefault("detour_depth", 3)
    rng = random.Random(seed)
    return derive_journey(tree, choose_shortcut(tree, rng), rng, transitions=TRANSITIONS, **kw)


def detours(thought: Thought) -> list[tuple[int, list[int]]]:
    """(on-path node, detour nodes) for each detour, in walk order."""
    on_path = set(thought.shortcut)
    out, current, anchor = [], [], thought.visits[0]
    for v in thought.visits[1:]:
        if v in on_path:
            if current:
                out.append((anchor, current))
                current = []
            anchor = v
        else:
            current.append(v)
    return out


def check_journey(tree: Tree, t: Thought, max_trials: int, detour_depth: int, p: float) -> None:
    """Every invariant a journey must satisfy."""
    sc = t.shortcut
    # The shortcut is a root-to-correct-leaf path with the best score on offer.
    assert sc == tree.path(sc[-1]) and sc[0] == 0
    assert sc[-1] in tree.correct_leaves()
    best = max(path_score(tree, tree.path(leaf)) for leaf in tree.correct_leaves())
    assert path_score(tree, sc) == best

    # Walk the visits: each move is a tree edge down, or a return to the shortcut node the detour
    # left from, and the segments mirror the moves one for one.
    assert t.visits[0] == 0 and t.visits[-1] == sc[-1]
    assert len(t.segments) == len(t.visits) - 1
    on_path = set(sc)
    returns = 0
    for (a, b), seg in zip(zip(t.visits, t.visits[1:]), t.segments):
        if tree.nodes[b].parent_id == a:
            assert seg.kind == "step" and seg.node_id == b
            assert seg.text == tree.nodes[b].step.strip()
        else:
            assert a not in on_path and b in on_path
            assert b == next(x for x in reversed(tree.path(a)) if x in on_path)
            assert seg.kind == "reflection" and seg.node_id == a
            assert seg.text.rstrip("\"')").endswith((".", "!", "?"))
            returns += 1
    assert returns == t.n_backtracks == sum(s.kind == "reflection" for s in t.segments)

    # Ends at the verified leaf, whose step (with the boxed answer) closes the thought.
    assert t.segments[-1].kind == "step" and t.segments[-1].node_id == sc[-1]
    assert is_correct_leaf(tree.nodes[t.answer_node])

    # The shortcut is walked in order, and its steps appear exactly once each, in order.
    it = iter(t.visits)
    assert all(x in it for x in sc)
    assert [s.node_id for s in t.segments if s.kind == "step" and s.node_id in on_path] == sc[1:]

    # Detours: never revisit, never touch a correct leaf, stay within the caps, wrong turns first.
    off_visits = [v for v in t.visits if v not in on_path]
    assert len(off_visits) == len(set(off_visits))
    assert not any(is_correct_leaf(tree.nodes[v]) for v in off_visits)
    per_node = Counter(anchor for anchor, _ in detours(t))
    for u, nxt in zip(sc, sc[1:]):
        eligible = [c for c in tree.children[u] if c != nxt and not is_correct_leaf(tree.nodes[c])]
        assert per_node[u] <= max_trials
        if p == 1.0:
            assert per_node[u] == min(max_trials, len(eligible))
        firsts = [d[0] for anchor, d in detours(t) if anchor == u]
        wrongness = [_wrong(tree, c) for c in firsts]
        assert wrongness == sorted(wrongness, reverse=True)
        if p == 1.0:
            n_wrong = sum(_wrong(tree, c) for c in eligible)
            assert sum(wrongness) == min(n_wrong, len(firsts))
    for _, d in detours(t):
        assert 1 <= len(d) <= detour_depth
        assert all(tree.nodes[b].parent_id == a for a, b in zip(d, d[1:]))
        options = [c for c in tree.children[d[-1]] if not is_correct_leaf(tree.nodes[c])]
        assert len(d) == detour_depth or not options


def _wrong(tree: Tree, node_id: int) -> bool:
    node = tree.nodes[node_id]
    return node.verdict == "incorrect" or node.answer_correct is False


def random_tree(i: int) -> Tree:
    """A random tree: bushy, random verdicts, scores, rationales and terminal outcomes."""
    r = random.Random(i)
    parents: dict[int, int] = {}
    frontier, next_id = [0], 1
    target = r.randint(1, 30)
    while frontier and next_id <= target:
        parent = frontier.pop(r.randrange(len(frontier)))
        for _ in range(r.randint(1, 4)):
            parents[next_id] = parent
            frontier.append(next_id)
            next_id += 1
    leaves = [n for n in parents if n not in parents.values()]
    correct = [n for n in leaves if r.random() < 0.3]
    wrong = [n for n in leaves if n not in correct and r.random() < 0.5]
    incorrect = [n for n in parents if r.random() < 0.3]
    score = {n: r.choice([None, 0.1, 0.5, 0.9, 1.0]) for n in parents}
    rationale = {n: r.choice(["", "The sum is off by one.", "Uses {x} wrongly"]) for n in parents}
    tree = make_tree(parents, f"r{i}", correct=correct, wrong=wrong, incorrect=incorrect)
    for n in parents:
        tree.nodes[n].score = score[n]
        tree.nodes[n].rationale = rationale[n]
    return tree


# A bushy tree used by several tests:
#              0
#        1       2     3
#     4  5  6   7  8   9
#    10     11        12
# correct leaves: 10 and 8 (equal path scores); 7 has a wrong answer; 5 and 9 judged incorrect.
BUSHY = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 2, 8: 2, 9: 3, 10: 4, 11: 6, 12: 9}


def bushy() -> Tree:
    return make_tree(BUSHY, correct=[10, 8], wrong=[7], incorrect=[5, 9], score={1: 0.9, 2: 0.9})


def test_journey_on_bushy_tree_satisfies_invariants():
    tree = bushy()
    for seed in range(20):
        t = journey(tree, seed)
        check_journey(tree, t, max_trials=2, detour_depth=3, p=1.0)
        assert t.n_backtracks > 0


def test_shortcut_prefers_best_path_score_and_breaks_ties_by_seed():
    tree = bushy()
    assert {tuple(choose_shortcut(tree, random.Random(s))) for s in range(30)} == {
        (0, 1, 4, 10),
        (0, 2, 8),
    }
    tree.nodes[4].score = 0.2
    assert {tuple(choose_shortcut(tree, random.Random(s))) for s in range(30)} == {(0, 2, 8)}
    tree.nodes[4].score, tree.nodes[2].verdict = 0.2, "incorrect"
    assert choose_shortcut(tree, random.Random(0)) == [0, 1, 4, 10]


@pytest.mark.parametrize(("aggregation", "expected"), [("min", 2), ("prod", 2), ("last", 4)])
def test_shortcut_follows_the_configured_path_aggregation(aggregation, expected):
    # Path to 2: steady 0.6, 0.6 (min 0.6, prod 0.36, last 0.6); path to 4: 0.3 then 0.9
    # (min 0.3, prod 0.27, last 0.9).
    tree = make_tree({1: 0, 2: 1, 3: 0, 4: 3}, correct=[2, 4], score={1: 0.6, 2: 0.6, 3: 0.3, 4: 0.9})
    shortcut = choose_shortcut(tree, random.Random(0), aggregation)
    assert shortcut[-1] == expected


def test_same_seed_same_thought_different_seeds_differ():
    tree = bushy()
    a = derive_thoughts(
        tree, seed=7, journeys_per_tree=3, max_trials=2, detour_depth=3, transitions=TRANSITIONS
    )
    b = derive_thoughts(
        tree, seed=7, journeys_per_tree=3, max_trials=2, detour_depth=3, transitions=TRANSITIONS
    )
    assert a == b
    texts = {
        derive_thoughts(
            tree, seed=s, journeys_per_tree=1, max_trials=2, detour_depth=3, transitions=TRANSITIONS
        )[0].text
        for s in range(10)
    }
    assert len(texts) > 1


def test_thoughts_do_not_depend_on_other_trees_or_order():
    kw = dict(seed=3, journeys_per_tree=2, max_trials=2, detour_depth=3, transitions=TRANSITIONS)
    first = [derive_thoughts(random_tree(i), **kw) for i in range(5)]
    backwards = [derive_thoughts(random_tree(i), **kw) for i in reversed(range(5))]
    assert first == backwards[::-1]


def test_derive_thoughts_returns_distinct_journeys_then_shortcut():
    tree = bushy()
    thoughts = derive_thoughts(
        tree, seed=1, journeys_per_tree=6, max_trials=1, detour_depth=1, transitions=TRANSITIONS
    )
    *journeys, shortcut = thoughts
    assert 1 <= len(journeys) <= 6
    assert all(j.kind == "journey" for j in journeys) and shortcut.kind == "shortcut"
    assert len({tuple(j.visits) for j in journeys}) == len(journeys)
    assert shortcut.shortcut == journeys[0].shortcut
    assert all(t.seed == 1 for t in thoughts)


def test_many_journeys_on_a_path_collapse_to_one():
    tree = make_tree({1: 0, 2: 1}, correct=[2])
    thoughts = derive_thoughts(
        tree, seed=0, journeys_per_tree=5, max_trials=3, detour_depth=3, transitions=TRANSITIONS
    )
    assert [t.kind for t in thoughts] == ["journey", "shortcut"]


def test_tree_without_correct_leaf_gives_nothing():
    tree = make_tree({1: 0, 2: 1, 3: 0}, wrong=[2, 3])
    assert choose_shortcut(tree, random.Random(0)) is None
    assert (
        derive_thoughts(
            tree, seed=0, journeys_per_tree=2, max_trials=2, detour_depth=2, transitions=TRANSITIONS
        )
        == []
    )


def test_plain_correct_path_journey_equals_shortcut():
    tree = make_tree({1: 0, 2: 1, 3: 2}, correct=[3])
    j = journey(tree)
    s = derive_shortcut(tree, [0, 1, 2, 3], seed=0)
    assert j.text == s.text == "step 1\n\nstep 2\n\nstep 3 \\boxed{2}"
    assert j.n_backtracks == s.n_backtracks == 0
    assert j.visits == s.visits == [0, 1, 2, 3]
    assert s.steps == ["step 1", "step 2", "step 3 \\boxed{2}"] and s.answer_node == 3


def test_root_step_is_not_emitted_and_steps_are_stripped():
    tree = make_tree({1: 0, 2: 1}, correct=[2], step={1: "  first\n"})
    t = journey(tree)
    assert t.steps[0] == "first" and "Problem" not in t.text


def test_max_trials_bounds_detours_per_on_path_node():
    tree = make_tree({i: 0 for i in range(1, 8)}, correct=[1])
    for k in range(4):
        t = journey(tree, max_trials=k)
        assert t.n_backtracks == k
        check_journey(tree, t, max_trials=k, detour_depth=3, p=1.0)


def test_detour_depth_bounds_steps_per_detour():
    chain = {1: 0, 2: 0, **{i: i - 1 for i in range(3, 10)}}  # 2 -> 3 -> ... -> 9
    tree = make_tree(chain, correct=[1])
    for depth in (1, 3, 20):
        ((_, d),) = detours(journey(tree, max_trials=1, detour_depth=depth))
        assert d == [2, 3, 4, 5, 6, 7, 8, 9][:depth]


def test_incorrect_children_are_tried_first():
    tree = make_tree({i: 0 for i in range(1, 8)}, correct=[1], wrong=[7], incorrect=[3])
    for seed in range(20):
        firsts = [d[0] for _, d in detours(journey(tree, seed, max_trials=2))]
        assert sorted(firsts) == [3, 7]


def test_detours_skip_empty_and_repeated_steps():
    # 2 repeats the on-path step 1, 3 is empty, 4 repeats 5: only one of 4/5 is a real wrong turn.
    step = {1: "2 + 2 = 4", 2: " 2 + 2 = 4 ", 3: "", 4: "2 + 2 = 5", 5: "2 + 2 = 5", 6: "", 7: "so 5"}
    tree = make_tree({1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 4, 7: 4, 8: 5}, correct=[1], step=step)
    for seed in range(20):
        t = journey(tree, seed, max_trials=5, detour_depth=3)
        taken = [d for _, d in detours(t)]
        assert len(taken) == 1 and taken[0][0] in (4, 5)
        assert all(tree.nodes[i].step.strip() for i in taken[0])


def test_detour_never_enters_a_correct_leaf():
    # 2 has a correct child 3 and a dead end 4; the correct sibling 5 of the shortcut is skipped.
    tree = make_tree({1: 0, 2: 0, 3: 2, 4: 2, 5: 0}, correct=[1, 3, 5], score={1: 1.0})
    for seed in range(20):
        t = journey(tree, seed, max_trials=3, detour_depth=5)
        assert [d for _, d in detours(t)] == [[2, 4]]


def test_detour_stops_before_a_correct_leaf_it_would_reach():
    tree = make_tree({1: 0, 2: 0, 3: 2}, correct=[1, 3], score={1: 1.0, 2: 0.2})
    t = journey(tree, max_trials=1, detour_depth=5)
    assert t.visits == [0, 2, 0, 1]


def test_reflection_uses_rationale_of_first_incorrect_node():
    tree = make_tree(
        {1: 0, 2: 0, 3: 2, 4: 3},
        correct=[1],
        verdict={3: "incorrect", 4: "incorrect"},
        rationale={2: "two is fine", 3: "Three  is\n wrong", 4: "four is wrong"},
    )
    t = journey(tree, max_trials=1, detour_depth=3)
    (reflection,) = [s for s in t.segments if s.kind == "reflection"]
    assert "Three is wrong" in reflection.text and "four" not in reflection.text
    assert reflection.node_id == 4


def test_reflection_falls_back_to_last_node_rationale():
    tree = make_tree({1: 0, 2: 0, 3: 2}, correct=[1], rationale={2: "first", 3: "Last one."})
    t = journey(tree, max_trials=1)
    assert "Last one." in t.segments[-2].text and "first" not in t.segments[-2].text


@pytest.mark.parametrize("rationale", ["   ", None])  # None: a null read back from parquet
def test_empty_rationale_uses_no_rationale_phrases(rationale):
    tree = make_tree({1: 0, 2: 0}, correct=[1], rationale={2: rationale})
    for seed in range(10):
        text = journey(tree, seed).segments[1].text
        assert text.startswith(TRANSITIONS.reflect_no_rationale)


def test_braces_in_model_text_do_not_break_rendering():
    tree = make_tree(
        {1: 0, 2: 1, 3: 1},
        correct=[2],
        step={1: "Let $f(x) = \\frac{1}{x}$ and {step}", 3: "{rationale} {0}"},
        rationale={3: "The {step} and {rationale} and \\frac{a}{b} are wrong"},
    )
    for seed in range(10):
        t = journey(tree, seed)
        reflection = t.segments[2].text
        assert "The {step} and {rationale} and \\frac{a}{b} are wrong." in reflection
        assert t.segments[0].text == "Let $f(x) = \\frac{1}{x}$ and {step}"
        assert t.segments[1].text == "{rationale} {0}"


def test_long_rationale_and_step_are_shortened_and_punctuated():
    words = " ".join(f"word{i}" for i in range(200))
    tree = make_tree({1: 0, 2: 1, 3: 1}, correct=[2], step={1: words}, rationale={3: words})
    t = journey(tree, max_trials=1)
    reflection = t.segments[2].text
    assert len(reflection) < 600 and "word199" not in reflection
    assert reflection.endswith((".", '."', "..."))


def test_shipped_transitions_load():
    assert len(TRANSITIONS.reflect) >= 6
    assert len(TRANSITIONS.reflect_no_rationale) >= 6
    assert len(TRANSITIONS.return_) >= 6
    assert all("{rationale}" in t for t in TRANSITIONS.reflect)


@pytest.mark.parametrize(
    "content, key",
    [
        ("reflect_no_rationale: [a]\nreturn: [b]\n", "reflect"),
        ("reflect: ['x {rationale}']\nreflect_no_rationale: []\nreturn: [b]\n", "reflect_no_rationale"),
        ("reflect: ['x {rationale}']\nreflect_no_rationale: [a]\nreturn: [1]\n", "return"),
        ("reflect: [no slot]\nreflect_no_rationale: [a]\nreturn: [b]\n", "reflect"),
        ("- just a list\n", "reflect"),
    ],
)
def test_broken_transitions_name_the_key(tmp_path, content, key):
    path = tmp_path / "t.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=key):
        load_transitions(path)


def test_journey_rejects_a_shortcut_not_ending_at_a_correct_leaf():
    tree = bushy()
    with pytest.raises(ValueError):
        derive_journey(
            tree, [0, 1, 5], random.Random(0), max_trials=1, detour_depth=1, transitions=TRANSITIONS
        )
    with pytest.raises(ValueError):
        derive_shortcut(tree, [0, 4, 10], seed=0)


def test_random_trees_satisfy_all_invariants():
    seen_journeys = 0
    for i in range(200):
        tree = random_tree(i)
        r = random.Random(i)
        max_trials, depth, p = r.randint(0, 3), r.randint(1, 4), r.choice([1.0, 0.5])
        thoughts = derive_thoughts(
            tree,
            seed=i,
            journeys_per_tree=2,
            max_trials=max_trials,
            detour_depth=depth,
            transitions=TRANSITIONS,
            detour_probability=p,
        )
        if not tree.correct_leaves():
            assert thoughts == []
            continue
        *journeys, shortcut = thoughts
        for t in journeys:
            check_journey(tree, t, max_trials, depth, p)
            seen_journeys += 1
        assert shortcut.visits == shortcut.shortcut == journeys[0].shortcut
        assert shortcut.steps == [tree.nodes[n].step.strip() for n in shortcut.shortcut[1:]]
        assert shortcut.n_backtracks == 0
    assert seen_journeys > 100
