"""Method propose-critique (seed 003, "How to construct long thoughts?", method 2): the policy writes
its solution one paragraph at a time and, after each, picks an action through structured output:

- continue: the next paragraph is a step;
- reflect: the next paragraph is a reflection (it opens with a phrase from the prompt file);
- backtrack to step k: steps after k leave the live path (they stay in the thought), and a reflection
  built from the model's reason and prompts/transitions.yaml returns to step k;
- terminate: the last step's \\boxed{} answer is checked; one that does not verify is answered with
  the negative signal ("the answer is wrong"), which opens a reflection, until the answer verifies,
  `max_retries` wrong answers or `max_steps` paragraphs.

A malformed action (not the JSON, an unknown action, a step that does not exist, terminate without
an answer) is counted by reason and treated as continue. Every problem runs its own loop of (policy
call, action call, answer check), all of them at once on one event loop, so the engine batches
whatever calls are in flight and a long problem holds back no other.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from pipeline.answers import AnswerChecker, verifies
from pipeline.config import Config
from pipeline.engines import Completion, Engine, EnginePool, Request
from pipeline.engines.base import generate_async
from pipeline.engines.seeds import request_seed
from pipeline.methods.transcript import (
    REFLECTION,
    STEP,
    StepSampling,
    Transcript,
    last_answer,
    method_stats,
    policy_step,
    run_transcripts,
    thought_row,
)
from pipeline.prompts import PolicyPrompt, fill, load_yaml
from trees.derive import load_transitions, reflection_text

READS = "problems"  # built from the shard's problems, through the engines
METHOD = "propose-critique"
ACTIONS = ("continue", "reflect", "backtrack", "terminate")


@dataclass(frozen=True)
class Action:
    name: str  # one of ACTIONS
    to_step: int | None = None  # backtrack: the last step kept (0: back to the problem)
    reason: str = ""
    problem: str = ""  # why the reply was malformed (the action is then continue)
    salvaged: bool = False  # read from a reply cut at the token limit after its action


def _malformed(why: str) -> Action:
    return Action("continue", problem=why)


_ACTION = re.compile(r'"action"\s*:\s*"(\w+)"')
_TO_STEP = re.compile(r'"to_step"\s*:\s*(-?\d+)')


def _salvage(text: str) -> dict | None:
    """A reply cut at the token limit in its reason: the action was written first, so it stands
    (the small model often runs its reason on until the limit)."""
    action = _ACTION.search(text)
    if action is None:
        return None
    to_step = _TO_STEP.search(text)
    return {
        "action": action.group(1),
        "to_step": int(to_step.group(1)) if to_step else None,
        "salvaged": True,
    }


def parse_action(comp: Completion, n_steps: int, has_answer: bool) -> Action:
    """The model's action, or continue with the reason the reply could not be used.

    >>> parse_action(Completion('{"action": "backtrack", "to_step": 1, "reason": "2+3 is not 6"}', 9, "stop"), 2, False)
    Action(name='backtrack', to_step=1, reason='2+3 is not 6', problem='', salvaged=False)
    >>> parse_action(Completion('{"action": "backtrack", "to_step": 2, "reason": ""}', 9, "stop"), 2, False).problem
    'backtrack to step 2, which is not before the last step'
    >>> parse_action(Completion('{"action": "jump', 64, "length"), 2, False).problem
    'reply cut at the token limit'
    >>> parse_action(Completion('{"action": "reflect", "to_step": 1, "reason": "so so so', 64, "length"), 2, False)
    Action(name='reflect', to_step=None, reason='', problem='', salvaged=True)
    """
    if comp.finish_reason == "error":
        return _malformed("action call failed")
    try:
        data = json.loads(comp.text)
    except json.JSONDecodeError:
        if comp.finish_reason != "length":
            return _malformed("not JSON")
        data = _salvage(comp.text)
        if data is None:
            return _malformed("reply cut at the token limit")
    if not isinstance(data, dict) or data.get("action") not in ACTIONS:
        return _malformed("unknown action")
    name, reason, salvaged = data["action"], str(data.get("reason", "")).strip(), "salvaged" in data
    if name == "backtrack":
        k = data.get("to_step")
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_steps:
            return _malformed(f"backtrack to step {k}, which is not before the last step")
        return Action(name, k, reason, salvaged=salvaged)
    if name == "terminate" and not has_answer:
        return _malformed("terminate without a \\boxed{} answer")
    return Action(name, None, reason, salvaged=salvaged)


class ProposeCritique:
    """Each of the shard's problems through steps of (one policy call, one action call, one answer check)."""

    def __init__(self, cfg: Config, engine: Engine, checker: AnswerChecker):
        self.cfg, self.pc = cfg, cfg.propose_critique
        self.engine, self.checker = engine, checker
        self.prompt = PolicyPrompt(self.pc.prompt)
        data = load_yaml(self.pc.prompt)
        missing = [k for k in ("reflect_openers", "wrong_answer", "action") if k not in data]
        if missing:
            raise ValueError(f"prompt file {self.pc.prompt}: missing keys {missing}")
        self.openers, self.wrong_answer, self.action = (
            data["reflect_openers"],
            data["wrong_answer"],
            data["action"],
        )
        self.schema = json.dumps(self.action["schema"])  # property order as written: action first
        self.transitions = load_transitions(cfg.thoughts.transitions)
        self.sampling = StepSampling(
            self.pc.max_step_tokens, self.pc.temperature, self.pc.top_p, cfg.policy.step_delimiter
        )
        self.counts: Counter = Counter()
        self.actions: Counter = Counter()
        self.malformed: Counter = Counter()

    def run(self, problems: list[dict]) -> tuple[list[dict], dict]:
        transcripts = run_transcripts(problems, self.cfg.seed, METHOD, self._step)
        stats = {
            **method_stats(transcripts, self.counts),
            "actions": dict(self.actions),
            "malformed_actions": sum(self.malformed.values()),
            "malformed_by_reason": dict(self.malformed),
        }
        return [thought_row(t, METHOD) for t in transcripts], stats

    async def _step(self, t: Transcript) -> None:
        """A step, or a reflection, then the model's action on it."""
        await policy_step(self.engine, t, self.prompt, self.sampling, METHOD, self.cfg.seed, self.counts)
        if not t.done:
            await self._act(t)
        if not t.done and t.policy_calls >= self.pc.max_steps:
            self._settle(t)

    def _action_request(self, t: Transcript, round_: int) -> Request:
        a = self.action
        lines, n = [], 0
        for p in t.live():
            if p.kind == STEP:
                n += 1
                lines.append(f"Step {n}: {p.text}")
            else:
                lines.append(f"(reflection) {p.text}")
        answer = last_answer(t)
        note = "" if answer is None else fill(a.get("answer_note", ""), n=str(n), answer=answer)
        user = fill(
            a["user"],
            problem=t.problem["problem"],
            steps="\n".join(lines) or a.get("no_steps", ""),
            answer_note=note,
        )
        return Request.chat(
            [{"role": "system", "content": a["system"]}, {"role": "user", "content": user}],
            max_tokens=self.pc.action_max_tokens,
            temperature=self.pc.action_temperature,
            seed=request_seed(self.cfg.seed, METHOD, t.problem_id, round_, "action"),
            json_schema=self.schema,
        )

    async def _act(self, t: Transcript) -> None:
        """One action call for the paragraph just written, and the answer check when it terminates."""
        request = self._action_request(t, t.policy_calls)  # the round the paragraph was written in
        ((comp, *_),) = await generate_async(self.engine, [request])
        self.counts["action_calls"] += 1
        t.tokens += comp.tokens
        self.counts["action_tokens"] += comp.tokens
        action = parse_action(comp, len(t.live_steps()), last_answer(t) is not None)
        if action.problem:
            self.malformed[action.problem] += 1
        self.counts["salvaged_actions"] += action.salvaged
        self.actions[action.name] += 1
        if action.name == "reflect":
            t.opener = t.rng.choice(self.openers)
        elif action.name == "backtrack":
            back_to = t.drop_after(action.to_step)
            t.add(REFLECTION, reflection_text(action.reason, back_to, t.rng, self.transitions))
        elif action.name == "terminate":
            await self._terminate(t)

    async def _terminate(self, t: Transcript) -> None:
        answer = t.answer = last_answer(t)
        if await verifies(self.checker, t.problem["answer"], answer):
            t.finish(True, "verified")
            return
        self.counts["wrong_answers"] += 1
        t.wrong_answers += 1
        if t.wrong_answers > self.pc.max_retries:
            t.finish(False, "retries")
        else:  # the negative signal opens the next paragraph, a reflection the model must write
            t.opener = fill(self.wrong_answer, answer=answer)

    @staticmethod
    def _settle(t: Transcript) -> None:
        """Out of budget: not correct, even when the last step's answer happens to verify. The model
        never chose to stop there (SmolLM2-135M, which never terminates, repeats its answer until the
        budget ends), so the thought does not end the way journey training data should."""
        t.answer = last_answer(t) or t.answer
        t.finish(False, "budget")


def build(
    cfg: Config, problems: list[dict], pool: EnginePool, checker: AnswerChecker
) -> tuple[list[dict], dict]:
    return ProposeCritique(cfg, pool.get(cfg.propose_critique.engine), checker).run(problems)
