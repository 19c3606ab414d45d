"""The streaming tree search: trees advance on their own, and the order calls finish in changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.answers import AnswerChecker
from pipeline.config import load
from pipeline.scorers.critic import Critic
from pipeline.search.builder import TreeBuilder
from tests.fake_engine import FakeEngine

PROBLEMS = [
    {"problem_id": "slow", "problem": "A slow one: what is 2 + 2?", "answer": "4"},
    {"problem_id": "fast", "problem": "What is 1 + 4?", "answer": "5"},
    {"problem_id": "third", "problem": "What is 3 + 3?", "answer": "6"},
]


class SlowFake(FakeEngine):
    """FakeEngine's answers, on an event loop: every call about the slow problem takes `delay`
    seconds, the others `fast` seconds; `log` keeps (problem, depth asked for) as calls start."""

    def __init__(self, delay: float = 0.2, fast: float = 0.0):
        super().__init__()
        self.delay, self.fast = delay, fast
        self.log: list[tuple[str, int]] = []

    async def agenerate(self, requests):
        text = "\n".join(c for _, c in requests[0].messages)
        problem = next(p["problem_id"] for p in PROBLEMS if p["problem"] in text)
        self.log.append((problem, requests[0].messages[-1][1].count("\n\n")))
        await asyncio.sleep(self.delay if problem == "slow" else self.fast)
        return self.generate(requests)


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


def build(engine, checker, problems=PROBLEMS):
    cfg = load(overrides={"policy": {"width": 3, "max_depth": 3}})
    return TreeBuilder(cfg, engine, Critic(engine, cfg.critic), checker).build(problems)


def test_a_slow_tree_does_not_hold_the_others_back(checker):
    engine = SlowFake(delay=0.3)
    build(engine, checker)
    slow = [i for i, (p, _) in enumerate(engine.log) if p == "slow"]
    fast = [i for i, (p, _) in enumerate(engine.log) if p != "slow"]
    # While the slow tree's first call (0.3 s) is out, the other trees make every one of theirs,
    # policy and critic, to their last level.
    assert len(fast) > 6 and max(fast) < slow[1]
    assert max(d for p, d in engine.log if p != "slow") >= 2


def test_the_trees_do_not_depend_on_the_order_calls_finish_in(checker):
    reference = build(FakeEngine(), checker)
    # Other delays, other completion orders; the same trees, node ids and all.
    assert build(SlowFake(delay=0.05, fast=0.01), checker) == reference
    assert build(SlowFake(delay=0.0, fast=0.05), checker) == reference
    reordered = build(FakeEngine(), checker, PROBLEMS[::-1])
    assert sorted(reordered, key=lambda n: (n.problem_id, n.node_id)) == sorted(
        reference, key=lambda n: (n.problem_id, n.node_id)
    )


def test_node_ids_go_level_by_level_parents_first_siblings_in_sampling_order(checker):
    nodes = [n for n in build(SlowFake(delay=0.02), checker) if n.problem_id == "fast"]
    assert [n.node_id for n in nodes] == list(range(len(nodes)))
    keys = [(n.depth, n.parent_id) for n in nodes]
    assert keys == sorted(keys)
    for parent in {n.parent_id for n in nodes if not n.is_root}:
        steps = [n.step for n in nodes if n.parent_id == parent]
        assert steps == sorted(steps, key=lambda s: int(s.split(".")[1].split()[0]))
