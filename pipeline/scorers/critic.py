"""The LLM critic: judges the newest step of a path, with a rationale, through structured output."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pipeline.config import CriticConfig
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.base import schema_string
from pipeline.prompts import CriticPrompt
from pipeline.scorers.base import StepScore, StepToScore

_CORRECT = re.compile(r'"correct"\s*:\s*(true|false)')
_RATIONALE = re.compile(r'"rationale"\s*:\s*"((?:[^"\\]|\\.)*)')


def _unescape(fragment: str) -> str:
    try:
        return json.loads(f'"{fragment}"')
    except json.JSONDecodeError:
        return fragment


def parse_verdict(completion: Completion) -> StepScore:
    """Read the critic's JSON; salvage a verdict from a reply cut off by the token limit.

    >>> parse_verdict(Completion('{"correct": false, "rationale": "2 + 3 is 5, not 6."}', 12, "stop"))
    StepScore(verdict='incorrect', score=0.0, rationale='2 + 3 is 5, not 6.', problem='')
    >>> parse_verdict(Completion('{"correct": true, "rationale": "Adds 2 and', 128, "length")).problem
    'critic reply truncated at the token limit'
    """
    if completion.finish_reason == "error":
        return StepScore("unknown", None, problem=f"critic call failed: {completion.error}")
    text = completion.text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if (
        isinstance(data, dict)
        and isinstance(data.get("correct"), bool)
        and isinstance(data.get("rationale"), str)
    ):
        ok = data["correct"]
        return StepScore("correct" if ok else "incorrect", float(ok), data["rationale"].strip())
    correct = _CORRECT.search(text)
    if correct is None:
        why = "critic reply is not the expected JSON" if data is None else "critic reply misses fields"
        return StepScore("unknown", None, problem=why)
    ok = correct.group(1) == "true"
    rationale = _RATIONALE.search(text)
    why = (
        "critic reply truncated at the token limit"
        if completion.finish_reason == "length"
        else "critic reply is not valid JSON"
    )
    return StepScore(
        "correct" if ok else "incorrect",
        float(ok),
        _unescape(rationale.group(1)).strip() if rationale else "",
        why,
    )


class Critic:
    """The paper's o1-mini critic: a verdict and a rationale per step; keeps at most K correct."""

    name = "critic"
    rule = "verdict"

    def __init__(self, engine: Engine, cfg: CriticConfig):
        self.engine = engine
        self.cfg = cfg
        self.prompt = CriticPrompt(cfg.prompt)
        self.schema = schema_string(self.prompt.schema())

    def request(self, item: StepToScore) -> Request:
        return Request.chat(
            self.prompt.messages(item.problem, list(item.previous), item.step),
            n=1,
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            repetition_penalty=self.cfg.repetition_penalty,
            json_schema=self.schema,
        )

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        outs = self.engine.generate([self.request(item) for item in items])
        return [parse_verdict(o[0]) for o in outs], sum(o[0].tokens for o in outs)
