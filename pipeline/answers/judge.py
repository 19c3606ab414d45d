"""The optional LLM answer judge: decides the (reference, answer) pairs math-verify cannot.

It sees only pairs the symbolic check left undecided (a reference in prose or misread by
math-verify, a text answer that is not the text reference word for word), all of a batch in one
engine call, and answers {equivalent, rationale} through structured output.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.answers.reading import Verdict
from pipeline.config import AnswerJudgeConfig
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.base import schema_string
from pipeline.prompts import fill, load_yaml


@dataclass(frozen=True)
class JudgeItem:
    problem: str
    reference: str
    answer: str


def parse_judgement(completion: Completion) -> tuple[bool | None, str]:
    """The judge's verdict and rationale; (None, why) when the reply is not the JSON asked for.

    >>> parse_judgement(Completion('{"equivalent": true, "rationale": "252 is C(10, 5)."}', 9, "stop"))
    (True, '252 is C(10, 5).')
    >>> parse_judgement(Completion('{"equivalent": "yes", "rationale": ""}', 9, "stop"))
    (None, "judge reply field 'equivalent' is str, not bool")
    >>> parse_judgement(Completion('{"equivalent": tr', 128, "length"))
    (None, 'judge reply is not valid JSON (cut at the token limit)')
    """
    if completion.finish_reason == "error":
        return None, f"judge call failed: {completion.error}"
    try:
        data = json.loads(completion.text.strip())
    except json.JSONDecodeError:
        cut = " (cut at the token limit)" if completion.finish_reason == "length" else ""
        return None, f"judge reply is not valid JSON{cut}"
    if not isinstance(data, dict):
        return None, f"judge reply is JSON {type(data).__name__}, not an object"
    for name, kind in (("equivalent", bool), ("rationale", str)):
        if name not in data:
            return None, f"judge reply misses field {name!r}"
        if not isinstance(data[name], kind):
            return None, f"judge reply field {name!r} is {type(data[name]).__name__}, not {kind.__name__}"
    return data["equivalent"], data["rationale"].strip()


class AnswerJudge:
    """Settles undecided verdicts with an LLM; counts its calls, tokens and unusable replies."""

    def __init__(self, engine: Engine, cfg: AnswerJudgeConfig):
        self.engine = engine
        self.cfg = cfg
        prompt = load_yaml(cfg.prompt)
        for key in ("system", "user", "schema"):
            if key not in prompt:
                raise ValueError(f"prompt file {cfg.prompt}: missing key {key!r}")
        self.prompt = prompt
        self.schema = schema_string(prompt["schema"])
        self.counts: Counter = Counter()
        self.problems: Counter = Counter()  # unusable replies, by reason

    def request(self, item: JudgeItem) -> Request:
        user = fill(self.prompt["user"], problem=item.problem, reference=item.reference, answer=item.answer)
        return Request.chat(
            [{"role": "system", "content": self.prompt["system"]}, {"role": "user", "content": user}],
            n=1,
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            json_schema=self.schema,
        )

    def settle(self, items: Sequence[JudgeItem], verdicts: Sequence[Verdict]) -> list[Verdict]:
        """The verdicts, with each undecided one judged; one engine call for all of them."""
        out = list(verdicts)
        todo = [i for i, v in enumerate(out) if v.checker == "undecided"]
        if not todo:
            return out
        completions = self.engine.generate([self.request(items[i]) for i in todo])
        self.counts["calls"] += 1
        self.counts["requests"] += len(todo)
        for i, (completion,) in zip(todo, completions):
            self.counts["tokens"] += completion.tokens
            equivalent, rationale = parse_judgement(completion)
            if equivalent is None:
                self.problems[rationale] += 1
                out[i] = Verdict(None, "undecided", f"{out[i].reason}; {rationale}")
            else:
                out[i] = Verdict(equivalent, "judge", rationale)
        return out

    def stats(self) -> dict:
        return {**dict(self.counts), "problems": dict(self.problems)}
