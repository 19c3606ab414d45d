"""A scripted engine for unit tests of orchestration: deterministic answers, counted calls."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pipeline.engines.base import Completion, EngineStats, Request


class FakeEngine:
    """Policy requests get "step <depth>.<i>" (a \\boxed answer at depth 2); critic requests a verdict.

    fail_on_call makes that call (1-based) raise, as a crash in the middle of a stage would.
    """

    label = "fake"

    def __init__(self, fail_on_call: int | None = None):
        self.stats = EngineStats()
        self.fail_on_call = fail_on_call
        self.prompts: list[Request] = []

    def _answer(self, request: Request, i: int) -> str:
        if request.json_schema:
            return json.dumps(
                {"correct": i % 2 == 0 or "1" in request.messages[-1][1], "rationale": "Checked."}
            )
        depth = request.messages[-1][1].count("\n\n") + 1
        return f"step {depth}.{i}" + (f" so \\boxed{{{i + 4}}}" if depth >= 2 else "")

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.stats.calls += 1
        if self.fail_on_call == self.stats.calls:
            raise RuntimeError("engine died")
        self.stats.requests += len(requests)
        self.prompts.extend(requests)
        return [[Completion(self._answer(r, i), 3, "stop") for i in range(r.n)] for r in requests]

    def close(self) -> None:
        pass


class SharedEngine:
    """A test module's real engine behind a stage's pool: records the requests that reach it, and
    closing it leaves the engine open for the next test. `opened` collects every one made."""

    def __init__(self, engine, opened: list | None = None):
        self.engine, self.label = engine, engine.label
        self.requests: list = []
        if opened is not None:
            opened.append(self)

    @property
    def stats(self):
        return self.engine.stats

    def generate(self, requests):
        self.requests.extend(requests)
        return self.engine.generate(requests)

    def close(self) -> None:
        pass
