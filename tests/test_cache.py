"""The response cache: a rerun re-pays nothing, a resume after a crash re-pays only what was lost."""

from __future__ import annotations

import pytest

from pipeline.answers import AnswerChecker
from pipeline.config import load
from pipeline.engines.base import Completion, Request
from pipeline.engines.cache import CachedEngine, ResponseCache
from pipeline.scorers.critic import Critic
from pipeline.search.builder import TreeBuilder
from tests.fake_engine import FakeEngine

PROBLEMS = [
    {"problem_id": "a", "problem": "What is 2 + 2?", "answer": "4"},
    {"problem_id": "b", "problem": "What is 1 + 4?", "answer": "5"},
]


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


def build(engine, checker) -> list:
    cfg = load(overrides={"policy": {"width": 3, "max_depth": 3}})
    return TreeBuilder(cfg, engine, Critic(engine, cfg.critic), checker).build(PROBLEMS)


def cached(fake: FakeEngine, path) -> CachedEngine:
    return CachedEngine(fake.label, lambda: fake, ResponseCache(path))


def test_a_rerun_makes_no_engine_call_and_never_opens_the_engine(tmp_path, checker):
    first = FakeEngine()
    nodes = build(cached(first, tmp_path / "c.sqlite"), checker)
    assert first.stats.calls > 0

    def must_not_open():
        raise AssertionError("the engine was opened although everything was cached")

    engine = CachedEngine("fake", must_not_open, ResponseCache(tmp_path / "c.sqlite"))
    assert build(engine, checker) == nodes
    assert engine.stats.calls == 0 and engine.stats.cache_hits == first.stats.requests


def test_a_crash_mid_stage_resumes_paying_only_the_lost_batch(tmp_path, checker):
    reference = FakeEngine()
    expected = build(reference, checker)
    crashing = FakeEngine(fail_on_call=3)  # level 1 policy + critic are answered, level 2 policy dies
    with pytest.raises(RuntimeError):
        build(cached(crashing, tmp_path / "c.sqlite"), checker)
    resumed = FakeEngine()
    assert build(cached(resumed, tmp_path / "c.sqlite"), checker) == expected
    assert resumed.stats.calls == reference.stats.calls - 2
    assert resumed.stats.requests == reference.stats.requests - crashing.stats.requests


def test_any_change_to_prompt_or_sampling_misses(tmp_path):
    fake = FakeEngine()
    engine = cached(fake, tmp_path / "c.sqlite")
    base = Request.chat([{"role": "user", "content": "hi"}], n=2, temperature=0.7, seed=1)
    variants = [
        base,
        Request.chat([{"role": "user", "content": "hi!"}], n=2, temperature=0.7, seed=1),
        Request.chat([{"role": "user", "content": "hi"}], n=2, temperature=0.8, seed=1),
        Request.chat([{"role": "user", "content": "hi"}], n=2, temperature=0.7, seed=2),
        Request.chat([{"role": "user", "content": "hi"}], n=3, temperature=0.7, seed=1),
    ]
    engine.generate(variants)
    engine.generate(variants)
    assert fake.stats.requests == len(variants) and engine.stats.cache_hits == len(variants)


def test_failed_calls_are_not_cached(tmp_path):
    class Failing(FakeEngine):
        def generate(self, requests):
            self.stats.calls += 1
            return [[Completion("", 0, "error", error="APIConnectionError")] for _ in requests]

    fake = Failing()
    engine = cached(fake, tmp_path / "c.sqlite")
    request = Request.chat([{"role": "user", "content": "hi"}])
    engine.generate([request])
    engine.generate([request])
    assert fake.stats.calls == 2
