"""The LLM critic: judges the newest step of a path, with a rationale, through structured output.

Two variants are config: `rationale_first` puts the rationale before the verdict in the JSON schema
(constrained decoding writes properties in schema order, so the model reasons before it decides),
and `samples` = k judgements per step, verdict by majority, score = share judged correct.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pipeline.config import CriticConfig
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.base import generate_async
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


def majority(votes: Sequence[StepScore]) -> StepScore:
    """k judgements of one step as one: score = share of the usable votes that say correct, verdict
    "correct" when that share is at least half (a tie counts as correct, like a PRM score at its 0.5
    threshold; an odd k never ties), rationale from the first vote that agrees. Votes whose reply was
    unusable do not count; when none is usable the step is unknown.

    >>> v = [StepScore("incorrect", 0.0, "2 + 3 is 5."), StepScore("correct", 1.0, "Right."),
    ...      StepScore("incorrect", 0.0, "Not 6."), StepScore("unknown", None, problem="critic reply is not valid JSON")]
    >>> majority(v)
    StepScore(verdict='incorrect', score=0.3333333333333333, rationale='2 + 3 is 5.', problem='critic reply is not valid JSON')
    >>> majority(v[:2]).verdict
    'correct'
    """
    usable = [v for v in votes if v.score is not None]
    problem = next((v.problem for v in votes if v.problem), "")
    if not usable:
        return StepScore("unknown", None, problem=problem)
    share = sum(v.verdict == "correct" for v in usable) / len(usable)
    verdict = "correct" if share >= 0.5 else "incorrect"
    rationale = next(v.rationale for v in usable if v.verdict == verdict)
    return StepScore(verdict, share, rationale, problem)


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def schema_text(schema: dict, rationale_first: bool) -> str:
    """The reply schema as the request's JSON string: keys sorted (stable cache keys) except the
    properties, which keep the order the model writes them in: the verdict first, or the rationale.

    >>> s = {"type": "object", "properties": {"correct": {"type": "boolean"}, "rationale": {"type": "string"}}}
    >>> schema_text(s, rationale_first=True)
    '{"properties": {"rationale": {"type": "string"}, "correct": {"type": "boolean"}}, "type": "object"}'
    """
    out = _sorted_keys(schema)
    first = "rationale" if rationale_first else "correct"
    props = out["properties"]
    out["properties"] = {k: props[k] for k in sorted(props, key=lambda k: k != first)}
    return json.dumps(out)


class Critic:
    """The paper's o1-mini critic: a verdict and a rationale per step; keeps at most K correct."""

    name = "critic"
    rule = "verdict"

    def __init__(self, engine: Engine, cfg: CriticConfig):
        self.engine = engine
        self.cfg = cfg
        self.prompt = CriticPrompt(cfg.prompt)
        self.schema = schema_text(self.prompt.schema(), cfg.rationale_first)

    def request(self, item: StepToScore) -> Request:
        return Request.chat(
            self.prompt.messages(item.problem, list(item.previous), item.step),
            n=self.cfg.samples,
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            repetition_penalty=self.cfg.repetition_penalty,
            # Greedy judgements need no seed; leaving it out keeps their cache keys as they were.
            seed=item.seed if self.cfg.temperature > 0 else None,
            json_schema=self.schema,
        )

    def score(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        return self._read(self.engine.generate([self.request(item) for item in items]))

    async def ascore(self, items: Sequence[StepToScore]) -> tuple[list[StepScore], int]:
        return self._read(await generate_async(self.engine, [self.request(item) for item in items]))

    @staticmethod
    def _read(outs: list[list[Completion]]) -> tuple[list[StepScore], int]:
        # One judgement is its own majority, with the same verdict, score, rationale and problem.
        scores = [majority([parse_verdict(c) for c in o]) for o in outs]
        return scores, sum(c.tokens for o in outs for c in o)
