"""Method debate (seed 003, "How to construct long thoughts?", method 3): a policy agent writes one step
at a time; a critic agent (any engine) judges each new step through structured output, verdict
continue or backtrack with a rationale. On a backtrack the wrong step stays in the thought, the
critic's rationale becomes the reflection after it (in a phrase from prompts/transitions.yaml), the
step leaves the live path and the policy's next step is the correction.

A step whose \\boxed{} answer verifies ends the problem without a critic call. One the critic lets
pass but that does not verify is taken back like a backtrack, with "the answer is wrong" as the
rationale. The problem ends at a verified answer or after `max_steps` policy steps. Every problem
runs its own loop of (policy call, answer check, critic call), all of them at once on one event loop,
so the engines batch whatever calls are in flight and a long problem holds back no other.
"""

from __future__ import annotations

import json
from collections import Counter

from pipeline.answers import AnswerChecker, extract_boxed, verifies
from pipeline.config import Config
from pipeline.engines import Completion, Engine, EnginePool, Request
from pipeline.engines.base import generate_async
from pipeline.engines.seeds import request_seed
from pipeline.methods.transcript import (
    REFLECTION,
    StepSampling,
    Transcript,
    method_stats,
    policy_step,
    run_transcripts,
    thought_row,
)
from pipeline.prompts import PolicyPrompt, fill, load_yaml
from trees.derive import load_transitions, reflection_text

READS = "problems"  # built from the shard's problems, through the engines
METHOD = "debate"
VERDICTS = ("continue", "backtrack")


def parse_judgement(comp: Completion) -> tuple[str, str, str]:
    """(verdict, rationale, problem): an unusable reply is continue, with the reason.

    >>> parse_judgement(Completion('{"verdict": "backtrack", "rationale": "2 + 3 is 5, not 6."}', 9, "stop"))
    ('backtrack', '2 + 3 is 5, not 6.', '')
    >>> parse_judgement(Completion('{"verdict": "backtr', 128, "length"))
    ('continue', '', 'reply cut at the token limit')
    """
    if comp.finish_reason == "error":
        return "continue", "", "critic call failed"
    try:
        data = json.loads(comp.text)
    except json.JSONDecodeError:
        return (
            "continue",
            "",
            "reply cut at the token limit" if comp.finish_reason == "length" else "not JSON",
        )
    if not isinstance(data, dict) or data.get("verdict") not in VERDICTS:
        return "continue", "", "unknown verdict"
    return data["verdict"], str(data.get("rationale", "")).strip(), ""


class Debate:
    """Each of the shard's problems through steps of (one policy call, one answer check, one critic call)."""

    def __init__(self, cfg: Config, policy: Engine, critic: Engine, checker: AnswerChecker):
        self.cfg, self.d = cfg, cfg.debate
        self.policy, self.critic, self.checker = policy, critic, checker
        self.prompt = PolicyPrompt(self.d.prompt)
        data = load_yaml(self.d.prompt)
        missing = [k for k in ("wrong_answer", "critic") if k not in data]
        if missing:
            raise ValueError(f"prompt file {self.d.prompt}: missing keys {missing}")
        self.wrong_answer, self.judge = data["wrong_answer"], data["critic"]
        self.schema = json.dumps(self.judge["schema"])  # property order as written: verdict first
        self.transitions = load_transitions(cfg.thoughts.transitions)
        self.sampling = StepSampling(
            self.d.max_step_tokens, self.d.temperature, self.d.top_p, cfg.policy.step_delimiter
        )
        self.counts: Counter = Counter()
        self.verdicts: Counter = Counter()
        self.malformed: Counter = Counter()

    def run(self, problems: list[dict]) -> tuple[list[dict], dict]:
        transcripts = run_transcripts(problems, self.cfg.seed, METHOD, self._step)
        stats = {
            **method_stats(transcripts, self.counts),
            "verdicts": dict(self.verdicts),
            "malformed_verdicts": sum(self.malformed.values()),
            "malformed_by_reason": dict(self.malformed),
        }
        return [thought_row(t, METHOD) for t in transcripts], stats

    async def _step(self, t: Transcript) -> None:
        """The next step (a correction after a backtrack); a verified answer ends the problem,
        anything else goes to the critic."""
        step = await policy_step(
            self.policy, t, self.prompt, self.sampling, METHOD, self.cfg.seed, self.counts
        )
        if step:
            answer = extract_boxed(step)
            if answer is not None:
                t.answer = answer
                if await verifies(self.checker, t.problem["answer"], answer):
                    t.finish(True, "verified")
                    return
            await self._judge(t, step)
        if not t.done and t.policy_calls >= self.d.max_steps:
            t.finish(False, "budget")

    def _critic_request(self, t: Transcript, step: str, round_: int) -> Request:
        j = self.judge
        previous = [p.text for p in t.live()][:-1]  # the live path before the new step
        listed = "\n".join(f"{i}. {s}" for i, s in enumerate(previous, 1)) or j.get("no_previous_steps", "")
        user = fill(j["user"], problem=t.problem["problem"], previous_steps=listed, step=step)
        return Request.chat(
            [{"role": "system", "content": j["system"]}, {"role": "user", "content": user}],
            max_tokens=self.d.critic_max_tokens,
            temperature=self.d.critic_temperature,
            seed=request_seed(self.cfg.seed, METHOD, t.problem_id, round_, "critic"),
            json_schema=self.schema,
        )

    async def _judge(self, t: Transcript, step: str) -> None:
        """One critic call for the new step; a backtrack takes it off the live path."""
        request = self._critic_request(t, step, t.policy_calls)  # the round the step was written in
        ((comp, *_),) = await generate_async(self.critic, [request])
        self.counts["critic_calls"] += 1
        t.tokens += comp.tokens
        self.counts["critic_tokens"] += comp.tokens
        verdict, rationale, problem = parse_judgement(comp)
        if problem:
            self.malformed[problem] += 1
        self.verdicts[verdict] += 1
        if verdict == "continue" and extract_boxed(step) is not None:
            # The answer did not verify (a verified one ended the problem): the check overrules.
            self.counts["wrong_answers_passed_by_critic"] += 1
            verdict, rationale = "backtrack", fill(self.wrong_answer, answer=extract_boxed(step))
        if verdict == "backtrack":
            back_to = t.drop_after(len(t.live_steps()) - 1)
            t.add(REFLECTION, reflection_text(rationale, back_to, t.rng, self.transitions))


def build(
    cfg: Config, problems: list[dict], pool: EnginePool, checker: AnswerChecker
) -> tuple[list[dict], dict]:
    critic = cfg.debate.critic_engine or cfg.critic.engine
    return Debate(cfg, pool.get(cfg.debate.engine), pool.get(critic), checker).run(problems)
