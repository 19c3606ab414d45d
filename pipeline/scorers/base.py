"""What every step scorer takes and returns, so the tree builder can prune with any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StepToScore:
    """The newest step of a path, with what a scorer may need to judge it."""

    problem: str
    reference: str  # the reference answer (Monte-Carlo rollouts check against it)
    previous: tuple[str, ...]  # the steps before it, root first
    step: str
    seed: int = 0  # for scorers that sample


@dataclass(frozen=True)
class StepScore:
    verdict: str  # correct | incorrect | unknown
    score: float | None  # in [0, 1]; None when the scorer could not tell
    rationale: str = ""
    problem: str = ""  # why the scorer's output was not clean ("" when it was)


class Scorer(Protocol):
    name: str
    # "verdict": keep at most K children judged correct (the paper's critic rule);
    # "score": keep the K best-scored children (PRM, Monte-Carlo).
    rule: str

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        """Scores in item order, and the tokens the scorer generated. One engine batch per call.
        Scorers that talk to an engine also offer `async ascore(items)`, the same on an event loop."""


async def score_async(scorer: Scorer, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
    """`scorer.ascore` where it has one; otherwise `score` in a worker thread (a PRM's engine
    call), so the event loop's other trees go on meanwhile."""
    ascore = getattr(scorer, "ascore", None)
    if ascore is not None:
        return await ascore(items)
    return await asyncio.to_thread(scorer.score, items)
