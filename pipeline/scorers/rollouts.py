"""Math-Shepherd's automatic process labels: roll the policy out from a step and count the finishes
that reach the reference answer (soft label: their share; hard label: any)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pipeline.answers import AnswerChecker, extract_boxed
from pipeline.config import PolicyConfig, RolloutsConfig
from pipeline.engines import Engine, Request
from pipeline.engines.base import generate_async
from pipeline.prompts import PolicyPrompt
from pipeline.scorers.base import StepScore, StepToScore


def rollout_score(hits: int, m: int, truncated: int = 0) -> StepScore:
    """Share of the m rollouts that reached the reference, "correct" when any did.

    >>> rollout_score(2, 4)
    StepScore(verdict='correct', score=0.5, rationale='2 of 4 rollouts reach the reference answer', problem='')
    >>> rollout_score(0, 2, truncated=1).rationale
    '0 of 2 rollouts reach the reference answer (1 cut off at the token limit)'
    """
    why = f"{hits} of {m} rollouts reach the reference answer"
    if truncated:
        why += f" ({truncated} cut off at the token limit)"
    return StepScore("correct" if hits else "incorrect", hits / m, why)


def own_answer_score(ok: bool) -> StepScore:
    why = "the step's own answer " + ("verifies" if ok else "does not verify") + " against the reference"
    return StepScore("correct" if ok else "incorrect", float(ok), why)


class RolloutScorer:
    """m policy completions per step, finished to the end of the solution in one engine batch.

    A step that already holds a \\boxed{} answer is not rolled out: every rollout would end with that
    answer, so its value is whether the answer itself verifies.
    """

    name = "monte-carlo"
    rule = "score"

    def __init__(self, engine: Engine, checker: AnswerChecker, cfg: RolloutsConfig, policy: PolicyConfig):
        """`policy`: the rollouts continue with the policy's prompt and step delimiter."""
        self.engine = engine
        self.checker = checker
        self.prompt = PolicyPrompt(policy.prompt)
        self.m = cfg.m
        self.max_tokens = cfg.max_tokens
        self.temperature = cfg.temperature
        self.top_p = cfg.top_p
        self.delimiter = policy.step_delimiter

    def request(self, item: StepToScore) -> Request:
        # No stop string: a rollout runs on through later steps until the model ends its solution.
        return Request.chat(
            self.prompt.messages(item.problem, [*item.previous, item.step], self.delimiter),
            n=self.m,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=item.seed,
            continue_final=True,
        )

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        todo = self._todo(items)
        outs = self.engine.generate([self.request(items[i]) for i in todo]) if todo else []
        answers, pairs = self._answers(items, todo, outs)
        return self._scores(items, todo, outs, answers, pairs, self.checker.check([p for _, p in pairs]))

    async def ascore(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        todo = self._todo(items)
        outs = await generate_async(self.engine, [self.request(items[i]) for i in todo]) if todo else []
        answers, pairs = self._answers(items, todo, outs)
        verdicts = await self.checker.averdicts([p for _, p in pairs])
        return self._scores(items, todo, outs, answers, pairs, [v.correct is True for v in verdicts])

    @staticmethod
    def _todo(items: Sequence[StepToScore]) -> list[int]:
        return [i for i, item in enumerate(items) if extract_boxed(item.step) is None]

    @staticmethod
    def _answers(items, todo, outs) -> tuple[list[list[str | None]], list[tuple[int, tuple[str, str]]]]:
        """Each item's answers (its own, or its rollouts'), and the (item, (reference, answer)) pairs
        to verify: the whole batch's go to math-verify in one call."""
        answers = [[extract_boxed(item.step)] for item in items]
        for i, comps in zip(todo, outs):
            answers[i] = [extract_boxed(c.text) for c in comps]
        pairs = [
            (i, (items[i].reference, a)) for i, found in enumerate(answers) for a in found if a is not None
        ]
        return answers, pairs

    def _scores(self, items, todo, outs, answers, pairs, verified) -> tuple[list[StepScore], int]:
        rollouts = dict(zip(todo, outs))
        hits = Counter(i for (i, _), ok in zip(pairs, verified) if ok)
        scores = []
        for i in range(len(items)):
            if i not in rollouts:
                scores.append(own_answer_score(hits[i] > 0))
                continue
            comps = rollouts[i]
            failed = next((c for c in comps if c.finish_reason == "error"), None)
            if failed is not None:
                scores.append(StepScore("unknown", None, problem=f"rollout failed: {failed.error}"))
                continue
            truncated = sum(c.finish_reason == "length" and a is None for c, a in zip(comps, answers[i]))
            scores.append(rollout_score(hits[i], len(comps), truncated))
        return scores, sum(c.tokens for comps in outs for c in comps)
