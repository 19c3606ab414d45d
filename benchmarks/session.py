"""The real engine, loaded once, and the instrumented tree builds the engine figures share."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from time import perf_counter

from pipeline.answers import AnswerChecker
from pipeline.config import PROJECT_ROOT, Config, load
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.base import generate_async
from pipeline.engines.cache import CachedEngine, ResponseCache
from pipeline.scorers.critic import Critic
from pipeline.search.builder import TreeBuilder
from trees.model import Node

SAMPLE_PROBLEMS = PROJECT_ROOT / "pipeline" / "data" / "sample_problems.jsonl"


def sample_problems(count: int | None = None) -> list[dict]:
    """The bundled problems, repeated under new ids (copy k: "<id>-rk") until there are `count`:
    a repeat has other node seeds, so it grows another tree."""
    rows = [json.loads(line) for line in SAMPLE_PROBLEMS.read_text().splitlines() if line.strip()]
    base = [{"problem_id": r["id"], "problem": r["problem"], "answer": r["answer"]} for r in rows]
    count = len(base) if count is None else count
    return [
        {**p, "problem_id": p["problem_id"] + (f"-r{i // len(base)}" if i >= len(base) else "")}
        for i, p in ((i, base[i % len(base)]) for i in range(count))
    ]


class Recorder:
    """An engine that forwards every call and keeps the requests it was sent."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.label = inner.label
        self.requests: list[Request] = []

    @property
    def stats(self):
        return self.inner.stats

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.requests += requests
        return self.inner.generate(requests)

    async def agenerate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.requests += requests
        return await generate_async(self.inner, requests)

    def close(self) -> None:
        pass  # the shared engine outlives every build


class OneAtATime(Recorder):
    """The research-script pattern: one request in flight at a time, the next sent when it is back."""

    def __init__(self, inner: Engine):
        super().__init__(inner)
        self._lock: asyncio.Lock | None = None

    async def agenerate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self._lock = self._lock or asyncio.Lock()
        out = []
        for request in requests:
            async with self._lock:
                out += await super().agenerate([request])
        return out


@dataclass
class Build:
    """One timed tree build."""

    nodes: list[Node]
    wall_s: float  # the whole TreeBuilder.build
    engine_s: float  # seconds the in-process engine had work
    tokens: int  # tokens the in-process engine generated, policy and critic
    requests: list[Request]  # every request the builder sent, in order
    cache_file: Path


class Session:
    """The embedded model in one in-process vLLM engine (the default config's local engine), and
    the problem set the engine figures use."""

    def __init__(
        self,
        problems: int,
        width: int,
        depth: int,
        max_num_seqs: int | None = None,
        engine_process: bool | None = None,
    ):
        self.cfg = load(overrides={"policy": {"width": width, "max_depth": depth}})
        if self.cfg.critic.engine != self.cfg.policy.engine:
            raise ValueError("the benchmarks assume the policy and the critic share one engine")
        self.settings = self.cfg.engines[self.cfg.policy.engine]
        if max_num_seqs:
            self.settings = dataclasses.replace(self.settings, max_num_seqs=max_num_seqs)
        if engine_process is not None:
            self.settings = dataclasses.replace(self.settings, engine_process=engine_process)
        self.problems = sample_problems(problems)
        self._tmp = tempfile.TemporaryDirectory(prefix="journey-bench-")
        self._caches = 0
        # The best streaming build so far, with its requests as one raw batch (seconds, tokens).
        self.best: tuple[Build, float, int] | None = None

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
        TreeBuilder(cfg, engine, Critic(engine, cfg.critic), self.checker).build(sample_problems(17)[-1:])
        return engine

    def cache(self) -> ResponseCache:
        self._caches += 1
        return ResponseCache(Path(self._tmp.name) / f"build-{self._caches}.sqlite")

    def build(
        self,
        problems: list[dict] | None = None,
        builder: type[TreeBuilder] = TreeBuilder,
        wrap: Callable[[Engine], Recorder] = Recorder,
        cfg: Config | None = None,
        critic_engine: Engine | None = None,
    ) -> Build:
        """A tree build as the trees stage runs it (behind a fresh response cache), timed."""
        engine, cfg = self.engine, cfg or self.cfg
        cache = self.cache()
        policy = wrap(CachedEngine(engine.label, lambda: engine, cache))
        critic = Critic(critic_engine or policy, cfg.critic)
        # Every build starts from an empty prefix cache, so none rides on another.
        engine.llm.reset_prefix_cache()
        before = dataclasses.replace(engine.stats)
        start = perf_counter()
        nodes = builder(cfg, policy, critic, self.checker).build(problems or self.problems)
        wall = perf_counter() - start
        cache.close()
        return Build(
            nodes=nodes,
            wall_s=wall,
            engine_s=engine.stats.engine_s - before.engine_s,
            tokens=engine.stats.completion_tokens - before.completion_tokens,
            requests=policy.requests,
            cache_file=Path(self._tmp.name) / f"build-{self._caches}.sqlite",
        )

    def reference(self) -> tuple[Build, float, int]:
        """The streaming build the ratios compare against, and its requests as one raw batch
        (seconds, tokens): p1's best round when it ran, else one build and replay now."""
        if self.best is None:
            build = self.build()
            self.best = (build, *raw(self.engine, build.requests))
        return self.best

    def close(self) -> None:
        """Release the engine and the checker; a figure that needs them again loads them anew."""
        for name in ("engine", "checker"):
            if name in self.__dict__:
                self.__dict__.pop(name).close()


def raw(engine, requests: Sequence[Request], one_batch: bool = True) -> tuple[float, int]:
    """Seconds inside vllm.LLM.generate and tokens generated, sending these requests straight to
    it: all in one batch, or one after another. Prompts are prepared before the clock starts."""
    from vllm.inputs import TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=engine.chat.ids(r)) for r in requests]
    params = [engine._sampling(r) for r in requests]
    batches = [(prompts, params)] if one_batch else [([p], [s]) for p, s in zip(prompts, params)]
    engine.llm.reset_prefix_cache()
    seconds, tokens = 0.0, 0
    for batch_prompts, batch_params in batches:
        start = perf_counter()
        outputs = engine.llm.generate(batch_prompts, batch_params, use_tqdm=False)
        seconds += perf_counter() - start
        tokens += sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return seconds, tokens
