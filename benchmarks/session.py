"""The real engine, loaded once, and the instrumented tree builds the engine figures share."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from time import perf_counter

from pipeline.answers import AnswerChecker
from pipeline.config import PROJECT_ROOT, load
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.cache import CachedEngine, ResponseCache
from pipeline.scorers.critic import Critic
from pipeline.stages.trees import TreeBuilder
from trees.model import Node

SAMPLE_PROBLEMS = PROJECT_ROOT / "pipeline" / "data" / "sample_problems.jsonl"
# One vLLM instance at a time, and small: the machine is shared with test runs.
MEMORY_FRACTION = 0.2


def sample_problems() -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE_PROBLEMS.read_text().splitlines() if line.strip()]
    return [{"problem_id": r["id"], "problem": r["problem"], "answer": r["answer"]} for r in rows]


class Recorder:
    """An engine that forwards generate() and keeps every batch it was sent, with its time."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.label = inner.label
        self.batches: list[list[Request]] = []
        self.seconds: list[float] = []

    @property
    def stats(self):
        return self.inner.stats

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        start = perf_counter()
        out = self.inner.generate(requests)
        self.seconds.append(perf_counter() - start)
        self.batches.append(list(requests))
        return out

    def close(self) -> None:
        pass  # the shared engine outlives every build


class TimedChecker:
    """Forwards verdicts() and sums its time: answer checks run inside the build, so they are overhead."""

    def __init__(self, inner: AnswerChecker):
        self.inner = inner
        self.seconds = 0.0

    def verdicts(self, pairs):
        start = perf_counter()
        out = self.inner.verdicts(pairs)
        self.seconds += perf_counter() - start
        return out


@dataclass
class Build:
    """One timed tree build and where its time went."""

    nodes: list[Node]
    wall_s: float  # the whole TreeBuilder.build
    generate_s: float  # inside our engine stack's generate (response cache, rendering, vLLM)
    llm_s: float  # inside vllm.LLM.generate
    check_s: float  # answer checks (math-verify in the worker pool)
    tokens: int  # generated tokens, policy and critic
    calls: int  # engine batches
    batches: list[list[Request]]
    cache_file: Path


class Session:
    """The embedded model in one in-process vLLM engine, and the problem set the engine figures use."""

    def __init__(self, problems: int, width: int, depth: int):
        self.cfg = load(overrides={"policy": {"width": width, "max_depth": depth}})
        if self.cfg.critic.engine != self.cfg.policy.engine:
            raise ValueError("the benchmarks assume the policy and the critic share one engine")
        self.settings = dataclasses.replace(
            self.cfg.engines[self.cfg.policy.engine], gpu_memory_utilization=MEMORY_FRACTION
        )
        self.problems = sample_problems()[:problems]
        self.builds: list[Build] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="journey-bench-")

    @cached_property
    def checker(self) -> AnswerChecker:
        checker = AnswerChecker(self.cfg.answer_check.workers, self.cfg.answer_check.timeout_s)
        # The spawn pool starts its worker (which imports math-verify) on first use, once per stage:
        # setup, not build work, so it is paid here.
        checker.check([("4", "4")])
        return checker

    @cached_property
    def engine(self):
        from pipeline.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(self.settings)
        # A one-level build on a problem outside the set: the first generate, the critic's grammar
        # compilation and the checker's start-up are paid before anything is timed.
        cfg = load(overrides={"policy": {"width": 2, "max_depth": 1}})
        TreeBuilder(cfg, engine, Critic(engine, cfg.critic), self.checker).build(sample_problems()[-1:])
        return engine

    def new_build(self) -> Build:
        """A tree build as the trees stage runs it (behind a fresh response cache), timed in pieces."""
        engine = self.engine
        checker = TimedChecker(self.checker)
        cache_file = Path(self._tmp.name) / f"build-{len(self.builds)}.sqlite"
        cache = ResponseCache(cache_file)
        recorder = Recorder(CachedEngine(engine.label, lambda: engine, cache))
        builder = TreeBuilder(self.cfg, recorder, Critic(recorder, self.cfg.critic), checker)
        # Every build and every replay starts from an empty prefix cache, so none rides on another.
        engine.llm.reset_prefix_cache()
        before = dataclasses.replace(engine.stats)
        start = perf_counter()
        nodes = builder.build(self.problems)
        wall = perf_counter() - start
        cache.close()
        build = Build(
            nodes=nodes,
            wall_s=wall,
            generate_s=sum(recorder.seconds),
            llm_s=engine.stats.engine_s - before.engine_s,
            check_s=checker.seconds,
            tokens=engine.stats.completion_tokens - before.completion_tokens,
            calls=engine.stats.calls - before.calls,
            batches=recorder.batches,
            cache_file=cache_file,
        )
        self.builds.append(build)
        return build

    def builds_at_least(self, n: int) -> list[Build]:
        while len(self.builds) < n:
            self.new_build()
        return self.builds

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
        if "checker" in self.__dict__:
            self.checker.close()
        self._tmp.cleanup()
