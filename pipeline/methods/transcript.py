"""What the engine methods share: a per-problem transcript (the long thought as it grows), seeds, the
policy's step, the loop that drives every transcript at once, and the thought row and stats it becomes.

A transcript keeps every paragraph the method produced, in order: steps, and reflections. A backtrack
takes steps off the *live* path (what the policy continues from) but never out of the transcript, so
the long thought shows the wrong turn, the reflection and the return, like the tree walk's detours.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.answers import extract_boxed
from pipeline.engines import Engine, Request
from pipeline.engines.base import generate_async
from pipeline.engines.seeds import request_seed
from pipeline.io.tables import ThoughtRow
from pipeline.progress import Progress
from pipeline.prompts import PolicyPrompt

STEP, REFLECTION = "step", "reflection"


@dataclass
class Paragraph:
    kind: str  # step | reflection
    text: str
    live: bool = True  # False once a backtrack took it off the path the policy continues from


@dataclass
class Transcript:
    """One problem's long thought while a method builds it."""

    problem: dict
    seed: int
    paragraphs: list[Paragraph] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    policy_calls: int = 0  # policy paragraphs asked for (steps and reflections): the step budget
    opener: str = ""  # how the next paragraph opens ("Wait, ..."): a reflection; "" for a step
    wrong_answers: int = 0  # final answers that did not verify (propose-critique's retries)
    n_backtracks: int = 0
    n_reflections: int = 0
    tokens: int = 0  # every engine token spent on this problem, any role
    done: bool = False
    correct: bool = False
    answer: str | None = None  # the last final answer given
    ended_by: str = ""  # verified | budget | retries | error

    @property
    def problem_id(self) -> str:
        return self.problem["problem_id"]

    def live(self) -> list[Paragraph]:
        return [p for p in self.paragraphs if p.live]

    def live_steps(self) -> list[str]:
        return [p.text for p in self.live() if p.kind == STEP]

    def add(self, kind: str, text: str) -> None:
        self.paragraphs.append(Paragraph(kind, text))
        if kind == REFLECTION:
            self.n_reflections += 1

    def drop_after(self, keep_steps: int) -> str:
        """Take the live path back to its first `keep_steps` steps (reflections between them stay);
        returns the text gone back to: that step, or the problem for 0."""
        kept = 0
        for p in self.paragraphs:
            if not p.live:
                continue
            if kept >= keep_steps:
                p.live = False
            elif p.kind == STEP:
                kept += 1
        self.n_backtracks += 1
        steps = self.live_steps()
        return steps[-1] if steps else self.problem["problem"]

    def finish(self, correct: bool, ended_by: str) -> None:
        self.done, self.correct, self.ended_by = True, correct, ended_by


def new_transcripts(problems: list[dict], seed: int, method: str) -> list[Transcript]:
    return [Transcript(p, seed, rng=random.Random(f"{seed}:{method}:{p['problem_id']}")) for p in problems]


@dataclass(frozen=True)
class StepSampling:
    """How the policy samples one paragraph."""

    max_tokens: int
    temperature: float
    top_p: float
    delimiter: str


def step_request(
    t: Transcript, prompt: PolicyPrompt, sampling: StepSampling, seed: int, opener: str = ""
) -> Request:
    """Continue the assistant turn from the live path; with an opener ("Wait, ..."), the model
    continues that sentence, so the paragraph becomes a reflection."""
    messages = prompt.messages(t.problem["problem"], [p.text for p in t.live()], sampling.delimiter)
    if opener:
        messages[-1] = {**messages[-1], "content": messages[-1]["content"] + opener + " "}
    return Request.chat(
        messages,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        stop=(sampling.delimiter,),
        seed=seed,
        continue_final=True,
    )


async def policy_step(
    engine: Engine,
    t: Transcript,
    prompt: PolicyPrompt,
    sampling: StepSampling,
    method: str,
    seed: int,
    counts: Counter,
) -> str | None:
    """One policy call for the transcript's next paragraph: a step, or a reflection when it has an
    opener (used up here). Counted in counts (policy_calls, policy_tokens). Returns the paragraph's
    text ("" when the model wrote nothing), or None when the call failed (the problem ends).

    The seed's round is the transcript's own step number, so the request depends on this
    transcript's state alone (and keeps the response-cache keys of the round-by-round loop, where
    every unfinished problem wrote once per round)."""
    opener, t.opener = t.opener, ""
    round_ = t.policy_calls + 1
    request = step_request(
        t, prompt, sampling, request_seed(seed, method, t.problem_id, round_, "policy"), opener
    )
    ((comp, *_),) = await generate_async(engine, [request])
    counts["policy_calls"] += 1
    counts["policy_tokens"] += comp.tokens
    t.tokens += comp.tokens
    t.policy_calls += 1
    if comp.finish_reason == "error":
        t.finish(False, "error")
        return None
    text = " ".join(x for x in (opener, comp.text.strip()) if x)
    if text:
        t.add(REFLECTION if opener else STEP, text)
    return text


def run_transcripts(
    problems: list[dict], seed: int, method: str, step: Callable[[Transcript], Awaitable[None]]
) -> list[Transcript]:
    """Every problem's transcript through `step` until it is done, all on one event loop: each
    problem runs its own loop, so one that needs many steps (or slow calls) holds back no other,
    and the engine batches whatever calls are in flight. A step touches only its transcript (and
    counters that are sums), so the transcripts do not depend on the order calls finish in."""
    transcripts = new_transcripts(problems, seed, method)

    async def solve(t: Transcript, progress: Progress) -> None:
        while not t.done:
            spent = t.tokens
            await step(t)
            progress.update(tokens=t.tokens - spent)
        progress.update(done=1)

    async def solve_all() -> None:
        with Progress(method, len(transcripts), "problems") as progress:
            await asyncio.gather(*(solve(t, progress) for t in transcripts))

    asyncio.run(solve_all())
    return transcripts


def last_answer(t: Transcript) -> str | None:
    steps = t.live_steps()
    return extract_boxed(steps[-1]) if steps else None


def thought_row(t: Transcript, method: str) -> dict:
    steps = [p.text for p in t.paragraphs if p.kind == STEP]
    return ThoughtRow.of(
        t.problem,
        thought_id=f"{t.problem_id}/{method}/journey-0",
        kind="journey",
        text="\n\n".join(p.text for p in t.paragraphs),
        steps=steps,
        answer=t.answer,
        seed=t.seed,
        method=method,
        correct=t.correct,
        n_backtracks=t.n_backtracks,
        n_reflections=t.n_reflections,
        engine_tokens=t.tokens,
    ).as_row()


def method_stats(transcripts: list[Transcript], counts: Counter) -> dict:
    """Figures every engine method reports; `counts` holds the method's own (calls, tokens, ...)."""
    verified = [t for t in transcripts if t.correct]
    return {
        "problems": len(transcripts),
        "thoughts": len(transcripts),
        # Yield: problems whose thought ends at a verified answer; only those reach the journey files.
        "problems_with_verified_thought": len(verified),
        "yield": round(len(verified) / len(transcripts), 3) if transcripts else None,
        "steps": sum(sum(p.kind == STEP for p in t.paragraphs) for t in transcripts),
        "reflections": sum(t.n_reflections for t in transcripts),
        "backtracks": sum(t.n_backtracks for t in transcripts),
        "backtracks_per_verified_thought": [t.n_backtracks for t in verified],
        "ended_by": dict(Counter(t.ended_by for t in transcripts)),
        "engine_tokens": sum(t.tokens for t in transcripts),
        "engine_tokens_verified": sum(t.tokens for t in verified),
        # The most policy steps one problem took: the longest chain of calls, which bounds wall time.
        "rounds": max((t.policy_calls for t in transcripts), default=0),
        **dict(counts),
    }
