"""Guarded rewriting: each journey through its own attempts, one engine call per attempt.

Every journey goes through its attempts on its own (one event loop, all journeys at once), so a slow
rewrite holds back only its own journey. Attempt k has its own seed and, from the second on, the
checks the last rewrite failed. The first rewrite that passes is kept; a journey with none falls
back to its raw text, its failures recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from pipeline.answers import AnswerChecker, extract_boxed, verifies
from pipeline.config import AnnotationConfig, PolishConfig
from pipeline.engines import Completion, Request
from pipeline.engines.base import generate_async
from pipeline.engines.seeds import request_seed
from pipeline.polish.feedback import RetryPrompt
from pipeline.polish.guard import GuardResult, guard_checks, instruction_lines
from pipeline.progress import Progress
from pipeline.prompts import PolishPrompt, load_yaml

log = logging.getLogger(__name__)


def attempt_seed(seed: int, thought_id: str, attempt: int) -> int:
    """A sampling seed per journey and attempt: a retry samples anew, a rerun asks the same request.

    >>> len({attempt_seed(1234, t, a) for t in ("j1", "j2") for a in (1, 2, 3)})
    6
    """
    return request_seed(seed, "polish", thought_id, attempt)


@dataclass(frozen=True)
class _Attempt:
    text: str
    tokens: int
    failed: tuple[str, ...]
    cut: bool  # stopped at the token budget


@dataclass
class Journey:
    """A text rewritten in guarded attempts: its row (problem, text, steps to keep, n_backtracks,
    reference, thought_id), token budget and attempts so far."""

    row: dict
    raw_tokens: int
    budget: int
    attempts: list[_Attempt] = field(default_factory=list)
    feedback: str = ""  # what the next attempt is told about the last one
    retry: bool = True  # False once passed, or after an engine error a retry would repeat

    @property
    def passed(self) -> bool:
        return bool(self.attempts) and not self.attempts[-1].failed


def unpolished_row(row: dict, status: str) -> dict:
    return {
        **row,
        "raw_text": row["text"],
        "polished_text": "",
        "polish_status": status,
        "polish_failed": [],
        "polish_tokens": 0,
        "polish_model": "",
        "polish_attempts": 0,
        "polish_budget": 0,
        "polish_attempt_failed": [],
    }


def polished_row(j: Journey, model: str) -> dict:
    last = j.attempts[-1]
    return {
        **unpolished_row(j.row, "polished" if j.passed else "fallback"),
        "text": last.text.strip() if j.passed else j.row["text"],
        "polished_text": last.text,
        "polish_failed": list(last.failed),
        "polish_tokens": sum(a.tokens for a in j.attempts),
        "polish_model": model,
        "polish_attempts": len(j.attempts),
        "polish_budget": j.budget,
        "polish_attempt_failed": [list(a.failed) for a in j.attempts],
    }


class Rounds:
    """The shard's journeys, each through up to `settings.attempts` attempts of its own, one engine
    call per attempt.

    settings: the polish section, or another with its fields (prompt, attempts, temperature,
    repetition_penalty, min_step_similarity), such as the annotation method's.
    """

    name = "polish"  # what the progress line is called
    gave_up = 0  # journeys held to one attempt because the first ones all failed (give_up_after)

    def __init__(
        self,
        seed: int,
        settings: PolishConfig | AnnotationConfig,
        journeys: list[Journey],
        engine,
        checker: AnswerChecker,
    ):
        self.seed, self.p = seed, settings
        self.journeys, self.engine, self.checker = journeys, engine, checker
        self.first = PolishPrompt(self.p.prompt)
        self.retry = RetryPrompt(self.p.prompt)
        data = load_yaml(self.p.prompt)
        self.markers = data.get("backtrack_markers", [])
        # Measured on the default run: both rewrites that passed ended by echoing the user turn.
        retry_user = (data.get("retry") or {}).get("user", "")
        self.instructions = instruction_lines(data["system"], data["user"], retry_user)

    def run(self) -> None:
        asyncio.run(self.arun())

    async def arun(self) -> None:
        # The annotation method's settings have no give_up_after: its notes differ too much per row.
        probe = getattr(self.p, "give_up_after", None) or len(self.journeys)
        first, rest = self.journeys[:probe], self.journeys[probe:]
        self._cap, self._decided = self.p.attempts, asyncio.Event()
        with Progress(self.name, len(self.journeys), "thoughts") as progress:

            async def decide() -> None:
                await asyncio.gather(*(self._attempts(j, progress) for j in first))
                # Decided by the first journeys only, in row order, so a rerun decides the same.
                if rest and self.p.attempts > 1 and not any(j.passed for j in first):
                    self._cap = 1
                    self.gave_up = len(rest)
                    log.warning(
                        "%s: none of the first %d journeys passed the guard in %d attempts; the other %d "
                        "get one attempt each (polish.give_up_after; a stronger polisher passes more)",
                        self.name,
                        len(first),
                        self.p.attempts,
                        len(rest),
                    )
                self._decided.set()

            await asyncio.gather(decide(), *(self._attempts(j, progress, wait=True) for j in rest))

    async def _attempts(self, j: Journey, progress: Progress, wait: bool = False) -> None:
        """One journey's attempts, each after the last failed, up to `attempts`; with `wait`, its
        retries wait until the first journeys show whether retrying is worth it."""
        while j.retry and len(j.attempts) < self.p.attempts:
            if wait and j.attempts:
                await self._decided.wait()
                if len(j.attempts) >= self._cap:
                    break
            request = self._request(j, len(j.attempts) + 1)
            comp = (await generate_async(self.engine, [request]))[0][0]
            self._record(j, comp, await self._guard(j, comp))
            progress.update(attempts=1, tokens=comp.tokens)
        progress.update(done=1, passed=int(j.passed))

    def _request(self, j: Journey, attempt: int) -> Request:
        r = j.row
        if attempt == 1:
            messages = self.first.messages(r["problem"], r["text"])
        else:
            messages = self.retry.messages(r["problem"], r["text"], j.feedback)
        return Request.chat(
            messages,
            max_tokens=j.budget,
            temperature=self.p.temperature,
            repetition_penalty=self.p.repetition_penalty,
            seed=attempt_seed(self.seed, r["thought_id"], attempt),
        )

    async def _guard(self, j: Journey, comp: Completion) -> GuardResult:
        answer = extract_boxed(comp.text)
        return guard_checks(
            comp.text,
            j.row["steps"],
            j.row["n_backtracks"],
            None if answer is None else await verifies(self.checker, j.row["reference"], answer),
            markers=self.markers,
            instructions=self.instructions,
            min_similarity=self.p.min_step_similarity,
        )

    def _failed(self, j: Journey, comp: Completion, guard: GuardResult) -> list[str]:
        """The checks one attempt failed; a subclass adds its own."""
        return list(guard.failed)

    def _feedback(self, j: Journey, comp: Completion, guard: GuardResult, cut: bool) -> str:
        """What the next attempt is told; a subclass adds lines for its own checks."""
        r = j.row
        answer = r["answer"] or r["reference"]
        return self.retry.feedback(guard, r["steps"], answer, self.markers, j.budget if cut else None)

    def _record(self, j: Journey, comp: Completion, guard: GuardResult) -> None:
        failed = self._failed(j, comp, guard)
        cut = comp.finish_reason == "length"
        if cut:
            failed.insert(0, f"budget: cut at the budget of {j.budget} tokens")
        elif comp.finish_reason == "error":
            failed.insert(0, f"polisher: finish_reason error {comp.error}".strip())
        j.attempts.append(_Attempt(comp.text, comp.tokens, tuple(failed), cut))
        # An engine error (a prompt over max_model_len, a request that failed its retries) would
        # only come back on a retry, whose prompt is longer still.
        j.retry = bool(failed) and comp.finish_reason != "error"
        if j.retry:
            j.feedback = self._feedback(j, comp, guard, cut)


def attempt_stats(journeys: list[Journey]) -> dict:
    """Counts keyed by attempt number ("1", "2", ...), so shards add up key by key."""
    made: Counter = Counter()
    passed: Counter = Counter()
    tokens: Counter = Counter()
    checks: Counter = Counter()
    for j in journeys:
        for k, a in enumerate(j.attempts, 1):
            made[str(k)] += 1
            tokens[str(k)] += a.tokens
            checks.update(f.split(":")[0] for f in a.failed)
        if j.passed:
            passed[str(len(j.attempts))] += 1
    return {
        "attempts_made": dict(made),
        "passed_by_attempt": {k: passed[k] for k in made},
        "tokens_by_attempt": dict(tokens),
        "cut_at_budget": sum(a.cut for j in journeys for a in j.attempts),
        "failed_checks": dict(checks),
        "raw_tokens": sum(j.raw_tokens for j in journeys),
        "budget_tokens": sum(j.budget for j in journeys),
    }
