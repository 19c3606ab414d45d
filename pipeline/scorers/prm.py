"""Process reward models: a score in [0, 1] for the newest step of each path, no rationale.

Math-Shepherd reads the PRM's next-token probabilities of "+" and "-" after a step tag; Qwen-PRM
reads a token-classification head at a step separator. Both keep the top K children (rule "score").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from pipeline.config import PRMConfig
from pipeline.engines.base import Request
from pipeline.scorers.base import StepScore, StepToScore

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class NextTokenEngine(Protocol):
    label: str

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str]
    ) -> list[dict[str, float]]: ...


class TokenClassifyEngine(Protocol):
    label: str

    def render(self, request: Request) -> str: ...

    def token_label_probs(self, prompts: Sequence[str], token: str) -> list[list[list[float]]]: ...


def _verdict(score: float, threshold: float) -> StepScore:
    return StepScore("correct" if score >= threshold else "incorrect", score)


def two_way_softmax(good: float, bad: float) -> float:
    """p(good) / (p(good) + p(bad)) from two log-probabilities, without overflow.

    >>> round(two_way_softmax(math.log(0.3), math.log(0.1)), 6)
    0.75
    >>> two_way_softmax(-1000.0, -1.0)
    0.0
    """
    d = good - bad
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


class MathShepherdPRM:
    """peiyi9979/math-shepherd-mistral-7b-prm's recipe: "{problem} {step 1} ки\\n{step 2} ки..." and
    the softmax of the "+" and "-" logits at the newest step's tag (the next token after it)."""

    name = "prm-math-shepherd"
    rule = "score"

    def __init__(self, engine: NextTokenEngine, cfg: PRMConfig):
        self.engine, self.cfg = engine, cfg

    def prompt(self, item: StepToScore) -> str:
        """The path up to the newest step, every step closed by the tag.

        >>> MathShepherdPRM(None, PRMConfig()).prompt(StepToScore("What is 2 + 3?", "5", ("We add.",), "2 + 3 = 5."))
        'What is 2 + 3? We add. ки\\n2 + 3 = 5. ки'
        """
        steps = "\n".join(f"{s} {self.cfg.step_tag}" for s in (*item.previous, item.step))
        return f"{item.problem} {steps}"

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        if not items:
            return [], 0
        logprobs = self.engine.next_token_logprobs(
            [self.prompt(i) for i in items], [self.cfg.good, self.cfg.bad]
        )
        return [
            _verdict(two_way_softmax(lp[self.cfg.good], lp[self.cfg.bad]), self.cfg.threshold)
            for lp in logprobs
        ], 0


class QwenPRM:
    """Qwen2.5-Math-PRM's recipe: a chat whose assistant turn holds the steps, each closed by the
    separator "<extra_0>"; the score is the head's probability of label 1 at the newest separator."""

    name = "prm-qwen"
    rule = "score"

    def __init__(self, engine: TokenClassifyEngine, cfg: PRMConfig):
        self.engine, self.cfg = engine, cfg

    def prompt(self, item: StepToScore) -> str:
        steps = "".join(s + self.cfg.separator for s in (*item.previous, item.step))
        messages = [
            {"role": "system", "content": QWEN_PRM_SYSTEM},
            {"role": "user", "content": item.problem},
            {"role": "assistant", "content": steps},
        ]
        # The model card closes the assistant turn; rendering it open instead changes only tokens
        # after the last separator, which a causal model's rewards at the separators never see.
        return self.engine.render(Request.chat(messages, continue_final=True))

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        if not items:
            return [], 0
        rows = self.engine.token_label_probs([self.prompt(i) for i in items], self.cfg.separator)
        return [_verdict(r[-1][1], self.cfg.threshold) for r in rows], 0
