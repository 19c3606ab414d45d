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
    """Read the critic's JSON. A reply that is not that JSON gives verdict "unknown" and says why,
    except one cut off by the token limit after its verdict, which is salvaged.

    >>> parse_verdict(Completion('{"correct": false, "rationale": "2 + 3 is 5, not 6."}', 12, "stop"))
    StepScore(verdict='incorrect', score=0.0, rationale='2 + 3 is 5, not 6.', problem='')
    >>> parse_verdict(Completion('{"correct": true, "rationale": "Adds 2 and', 128, "length")).problem
    'critic reply truncated at the token limit'
    >>> parse_verdict(Completion('{"correct": true}', 5, "stop")).problem
    "critic reply misses field 'rationale'"
    """
    if completion.finish_reason == "error":
        return StepScore("unknown", None, problem=f"critic call failed: {completion.error}")
    text = completion.text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _salvage(text) if completion.finish_reason == "length" else _unknown("is not valid JSON")
    if not isinstance(data, dict):
        return _unknown(f"is JSON {type(data).__name__}, not an object")
    for name, kind in (("correct", bool), ("rationale", str)):
        if name not in data:
            return _unknown(f"misses field {name!r}")
        if not isinstance(data[name], kind):
            return _unknown(f"field {name!r} is {type(data[name]).__name__}, not {kind.__name__}")
    ok = data["correct"]
    return StepScore("correct" if ok else "incorrect", float(ok), data["rationale"].strip())


def _unknown(why: str) -> StepScore:
    return StepScore("unknown", None, problem=f"critic reply {why}")


def _salvage(text: str) -> StepScore:
    """The verdict of a reply cut off mid-JSON: the model had already decided."""
    correct = _CORRECT.search(text)
    if correct is None:
        return _unknown("truncated at the token limit before its verdict")
    ok = correct.group(1) == "true"
    rationale = _RATIONALE.search(text)
    return StepScore(
        "correct" if ok else "incorrect",
        float(ok),
        _unescape(rationale.group(1)).strip() if rationale else "",
        "critic reply truncated at the token limit",
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
