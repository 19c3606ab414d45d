"""Polish attempts: retries told what failed, a token budget from the raw length, stats by attempt.

A scripted polisher pins the attempts down exactly; the embedded model checks the same against vLLM.
"""

from __future__ import annotations

import asyncio
import math

import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, load
from pipeline.engines.base import Completion, EngineSettings, EngineStats
from pipeline.io.tables import THOUGHT_SCHEMA, write_table
from pipeline.polish.budget import TokenCounter, token_budget
from pipeline.polish.feedback import RetryPrompt
from pipeline.polish.guard import GuardResult
from pipeline.polish.rounds import attempt_seed
from pipeline.stages.polish import run_polish
from tests.fake_engine import SharedEngine

PROMPT = "prompts/polish.yaml"
MARKERS = ["wait", "hmm", "let me go back"]
STEPS = [
    "5 + 1 is 0 + 0, so the answer is \\boxed{1}.",
    "We add 5 and 1, so we'll do the addition step by step carefully.",
    "5 + 1 = 6, so the answer is \\boxed{6}.",
]
RAW = (
    f"{STEPS[0]}\n\nHmm, that can't be right: 5 + 1 is not 0 + 0. Let me go back to the problem."
    f"\n\n{STEPS[1]}\n\n{STEPS[2]}"
)


def thought(thought_id: str, kind: str = "journey") -> dict:
    return {
        "problem_id": thought_id,
        "thought_id": thought_id,
        "kind": kind,
        "problem": f"What is 5 + 1? ({thought_id})",
        "reference": "6",
        "text": RAW,
        "steps": STEPS,
        "visits": [0, 1, 0, 2, 3],
        "shortcut": [0, 2, 3],
        "n_steps": 3,
        "n_backtracks": 1,
        "answer": "6",
        "seed": 0,
    }


def write_thoughts(path, ids=("fixed", "stuck")) -> None:
    write_table([thought(t) for t in ids] + [thought("short", "shortcut")], THOUGHT_SCHEMA, path)


def rows_by_id(path) -> dict:
    return {r["thought_id"]: r for r in pq.read_table(path).to_pylist()}


def user_turn(request) -> str:
    return [c for r, c in request.messages if r == "user"][-1]


def asked(requests, thought_id: str) -> list:
    """One journey's requests, in the order it made them."""
    return [r for r in requests if f"({thought_id})" in user_turn(r)]


def seeds_by_attempt(cfg, thought_id: str, n: int) -> list[int]:
    return [attempt_seed(cfg.seed, thought_id, k) for k in range(1, n + 1)]


# --- feedback and budget -------------------------------------------------------------------------


def test_retry_feedback_quotes_lost_steps_and_names_the_answer_and_the_markers():
    guard = GuardResult(answer="missing", missing=(1, 2), n_steps=3, markers_found=0, markers_needed=1)
    feedback = RetryPrompt(PROMPT).feedback(guard, STEPS, "6", MARKERS, cut_at=300)

    lines = feedback.splitlines()
    assert lines[0] == "- It ran past 300 tokens and was cut off. Keep it about as long as the scratch work."
    assert "\\boxed{6}" in lines[1]
    assert lines[2].startswith("- It left out 2 steps.")
    assert '"We add 5 and 1, so we\'ll do the addition step by step carefully."' in lines[2]
    assert '"5 + 1 = 6, so the answer is \\boxed{6}."' in lines[2]
    assert STEPS[0] not in lines[2]  # a step the rewrite kept is not asked for again
    assert "0 of the 1 moments of doubt" in lines[3] and '"wait", "hmm", "let me go back"' in lines[3]


def test_retry_feedback_has_a_line_only_for_the_checks_that_failed():
    wrong = GuardResult(answer="wrong", missing=(), n_steps=3, markers_found=2, markers_needed=1)
    assert RetryPrompt(PROMPT).feedback(wrong, STEPS, "6", MARKERS) == (
        "- Its final answer was wrong. End with \\boxed{6}."
    )


def test_budget_is_a_multiple_of_the_raw_tokens_plus_a_margin_under_the_cap():
    exact = TokenCounter(EngineSettings(name="local", kind="vllm", model="smollm2-135m-instruct"))
    estimate = TokenCounter(EngineSettings(name="api", kind="openai", model="m", base_url="http://x/v1"))
    tokens = exact.count(RAW)
    assert 0.5 * estimate.count(RAW) < tokens < 1.5 * estimate.count(RAW)
    assert token_budget(tokens, 1.5, 64, 1024) == math.ceil(1.5 * tokens) + 64
    assert token_budget(tokens * 10, 1.5, 64, 1024) == 1024


@pytest.mark.parametrize(("field", "value"), [("attempts", 0), ("budget_factor", 0), ("budget_margin", -1)])
def test_attempts_and_budget_settings_are_validated(field, value):
    with pytest.raises(ConfigError, match=f"config field polish.{field}: "):
        load(overrides={"polish": {field: value}})


# --- a scripted polisher: fixed on its retry, or never ------------------------------------------


class ScriptedPolisher:
    """A first attempt loses steps and the answer; a retry of "fixed" copies the scratch work back;
    "stuck" fails every time, its second attempt cut at the budget."""

    label = "scripted"

    def __init__(self):
        self.stats = EngineStats()
        self.requests = []

    def _answer(self, request) -> Completion:
        user = user_turn(request)
        if "rejected" not in user:
            return Completion("I add the numbers and get six.", 7, "stop")
        if "(fixed)" in user:
            scratch = user.split("Scratch work:\n", 1)[1].split("\n\nYour last rewrite", 1)[0]
            return Completion("So: " + scratch, 60, "stop")
        if len([r for r in self.requests if "(stuck)" in user_turn(r)]) == 2:
            return Completion("Hmm " * request.max_tokens, request.max_tokens, "length")
        return Completion("Wait, the answer is \\boxed{7}.", 9, "stop")

    def generate(self, requests):
        self.stats.calls += 1
        self.stats.requests += len(requests)
        self.requests.extend(requests)
        return [[self._answer(r)] for r in requests]

    def close(self) -> None:
        pass


def test_a_retry_is_told_what_failed_and_its_passing_rewrite_is_kept(tmp_path):
    write_thoughts(tmp_path / "t.parquet")
    polisher = ScriptedPolisher()
    cfg = load(overrides={"polish": {"attempts": 3, "budget_factor": 1.5, "budget_margin": 64}})

    stats = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=lambda settings: polisher)

    rows = rows_by_id(tmp_path / "p.parquet")
    fixed, stuck, short = rows["fixed"], rows["stuck"], rows["short"]
    assert (fixed["polish_status"], fixed["polish_attempts"], fixed["text"]) == ("polished", 2, "So: " + RAW)
    assert fixed["polish_attempt_failed"][1] == [] and fixed["polish_failed"] == []
    assert [f.split(":")[0] for f in fixed["polish_attempt_failed"][0]] == ["answer", "steps", "backtracks"]
    assert (stuck["polish_status"], stuck["polish_attempts"], stuck["text"]) == ("fallback", 3, RAW)
    cut = f"budget: cut at the budget of {stuck['polish_budget']} tokens"
    assert stuck["polish_attempt_failed"][1][0] == cut
    assert stuck["polish_failed"] == stuck["polish_attempt_failed"][2]
    assert stuck["polish_failed"][0] == "answer: the polished answer does not verify against the reference"
    assert (short["polish_status"], short["polish_attempts"]) == ("passthrough", 0)

    # One engine call per attempt; a journey retries only while it fails, each attempt with the seed
    # of its number and the raw length's budget.
    assert polisher.stats.calls == len(polisher.requests) == 5
    fixed_asked, stuck_asked = asked(polisher.requests, "fixed"), asked(polisher.requests, "stuck")
    assert [r.seed for r in fixed_asked] == seeds_by_attempt(cfg, "fixed", 2)
    assert [r.seed for r in stuck_asked] == seeds_by_attempt(cfg, "stuck", 3)
    assert len({r.seed for r in polisher.requests}) == 5
    budget = token_budget(TokenCounter(cfg.engines["local"]).count(RAW), 1.5, 64, cfg.polish.max_tokens)
    assert {r.max_tokens for r in polisher.requests} == {budget} == {fixed["polish_budget"]}
    assert "rejected" not in user_turn(fixed_asked[0]) + user_turn(stuck_asked[0])
    retries = [user_turn(r) for r in (fixed_asked[1], stuck_asked[1], stuck_asked[2])]
    assert all("\\boxed{6}" in u and '"5 + 1 = 6, so the answer is \\boxed{6}."' in u for u in retries[:2])
    assert "cut off" in retries[2] and "no final answer" in retries[2]  # stuck's third try hears of the cut

    assert stats["attempts_made"] == {"1": 2, "2": 2, "3": 1}
    assert stats["passed_by_attempt"] == {"1": 0, "2": 1, "3": 0}
    assert stats["tokens_by_attempt"] == {"1": 14, "2": 60 + budget, "3": 9}
    assert stats["polish_tokens"] == sum(stats["tokens_by_attempt"].values()) == 83 + budget
    assert (stats["polished"], stats["fallback"], stats["guard_pass_rate"]) == (1, 1, 0.5)
    assert stats["cut_at_budget"] == 1
    assert stats["failed_checks"] == {"answer": 4, "steps": 4, "backtracks": 2, "budget": 1}
    assert stats["budget_tokens"] == 2 * budget


def test_one_attempt_means_no_retry(tmp_path):
    write_thoughts(tmp_path / "t.parquet")
    polisher = ScriptedPolisher()

    cfg = load(overrides={"polish": {"attempts": 1}})

    stats = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=lambda settings: polisher)

    assert polisher.stats.calls == len(polisher.requests) == 2
    assert {r.seed for r in polisher.requests} == {attempt_seed(cfg.seed, t, 1) for t in ("fixed", "stuck")}
    assert (stats["attempts_made"], stats["passed_by_attempt"], stats["fallback"]) == ({"1": 2}, {"1": 0}, 2)


@pytest.mark.parametrize(
    "order, attempts",
    [
        # The first four all fail three times: the polisher cannot pass, so the rest try once.
        (("a", "b", "c", "d", "fixed", "e"), {"a": 3, "b": 3, "c": 3, "d": 3, "fixed": 1, "e": 1}),
        # One of the first four passes on its retry: retrying pays, every journey keeps its attempts.
        (("a", "fixed", "b", "c", "d", "e"), {"a": 3, "fixed": 2, "b": 3, "c": 3, "d": 3, "e": 3}),
    ],
)
def test_a_polisher_that_fails_the_first_journeys_gets_one_attempt_for_the_rest(
    tmp_path, caplog, order, attempts
):
    write_thoughts(tmp_path / "t.parquet", ids=order)
    polisher = ScriptedPolisher()
    cfg = load(overrides={"polish": {"attempts": 3, "give_up_after": 4}})

    stats = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=lambda settings: polisher)

    rows = rows_by_id(tmp_path / "p.parquet")
    assert {t: rows[t]["polish_attempts"] for t in order} == attempts
    gave_up = 2 if attempts["e"] == 1 else 0
    assert stats["polish_gave_up"] == gave_up
    assert ("get one attempt each (polish.give_up_after" in caplog.text) == bool(gave_up)
    # Decided by the first four in row order, so the same config and replies decide the same again.
    again = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p2.parquet", opener=lambda settings: polisher)
    assert rows_by_id(tmp_path / "p2.parquet") == rows and again["polish_gave_up"] == gave_up


class SlowPolisher(ScriptedPolisher):
    """ScriptedPolisher's answers on an event loop, every call for "stuck" taking `delay` seconds;
    `log` keeps ("start" or "end", thought, attempt) as calls start and end."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.log: list[tuple[str, str, int]] = []

    async def agenerate(self, requests):
        (request,) = requests
        thought_id = next(t for t in ("fixed", "stuck") if f"({t})" in user_turn(request))
        attempt = len(asked(self.requests, thought_id)) + 1
        self.log.append(("start", thought_id, attempt))
        await asyncio.sleep(self.delay if thought_id == "stuck" else 0)
        completions = self.generate(requests)
        self.log.append(("end", thought_id, attempt))
        return completions


def test_a_slow_journey_does_not_hold_back_the_others(tmp_path):
    write_thoughts(tmp_path / "t.parquet")
    cfg = load(overrides={"polish": {"attempts": 3}})
    inline = ScriptedPolisher()
    run_polish(cfg, tmp_path / "t.parquet", tmp_path / "inline.parquet", opener=lambda settings: inline)
    polisher = SlowPolisher(delay=0.3)

    run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=lambda settings: polisher)

    # While stuck's first attempt (0.3 s) is out, fixed fails, retries and passes: both its
    # attempts end before stuck's first does, and stuck's second starts after them.
    log = polisher.log
    assert [e for e in log if e[1] == "fixed"] == [
        ("start", "fixed", 1),
        ("end", "fixed", 1),
        ("start", "fixed", 2),
        ("end", "fixed", 2),
    ]
    assert log.index(("end", "fixed", 2)) < log.index(("end", "stuck", 1))
    assert log.index(("start", "stuck", 2)) > log.index(("end", "fixed", 2))
    assert len(asked(polisher.requests, "stuck")) == 3
    # The order calls end in changes nothing: the same rows as with the inline polisher.
    assert rows_by_id(tmp_path / "p.parquet") == rows_by_id(tmp_path / "inline.parquet")


class EchoingPolisher(ScriptedPolisher):
    """Keeps everything, then echoes the prompt's instruction, as the 135M polisher did; told so, stops."""

    def _answer(self, request) -> Completion:
        if "repeated these instructions" in user_turn(request):
            return Completion("So: " + RAW, 60, "stop")
        return Completion("So: " + RAW + "\n\nRewrite the scratch work as fluent reasoning.", 70, "stop")


def test_a_rewrite_that_echoes_the_prompt_is_not_kept_and_the_retry_is_told(tmp_path):
    write_thoughts(tmp_path / "t.parquet", ids=("echo",))
    polisher = EchoingPolisher()

    run_polish(
        load(overrides={"polish": {"attempts": 2}}),
        tmp_path / "t.parquet",
        tmp_path / "p.parquet",
        opener=lambda settings: polisher,
    )

    row = rows_by_id(tmp_path / "p.parquet")["echo"]
    assert row["polish_attempt_failed"][0] == [
        "echo: repeats the prompt's instruction 'Rewrite the scratch work as fluent reasoning.'"
    ]
    assert (row["polish_status"], row["text"]) == ("polished", "So: " + RAW)
    assert "instruction" not in row["text"]


# --- the embedded model in vLLM -----------------------------------------------------------------


@pytest.fixture
def real_polish(vllm_engine, tmp_path):
    """Two hand-written journeys for the embedded model; returns the config, the folder, the engines
    opened so far and the opener that records them."""
    opened: list[SharedEngine] = []
    write_thoughts(tmp_path / "t.parquet", ids=("a", "b"))
    cfg = load(
        overrides={
            # A stricter match than the default, so the small model's first rewrites fail and retry.
            "polish": {"attempts": 3, "budget_factor": 1.0, "budget_margin": 16, "min_step_similarity": 100},
        }
    )
    return cfg, tmp_path, opened, lambda settings: SharedEngine(vllm_engine, opened)


def test_real_polisher_retries_with_feedback_under_a_budget_and_reruns_from_the_cache(real_polish):
    cfg, tmp_path, opened, opener = real_polish

    stats = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=opener)

    (engine,) = opened
    rows = rows_by_id(tmp_path / "p.parquet")
    raw_tokens = TokenCounter(cfg.engines["local"]).count(RAW)
    budget = token_budget(raw_tokens, 1.0, 16, cfg.polish.max_tokens)
    assert budget < cfg.polish.max_tokens
    made = [rows[t]["polish_attempts"] for t in ("a", "b")]
    assert len(engine.requests) == sum(made) == sum(stats["attempts_made"].values())
    assert len({r.seed for r in engine.requests}) == len(engine.requests)
    for t in ("a", "b"):
        row = rows[t]
        assert row["polish_budget"] == budget and 1 <= row["polish_tokens"] <= budget * row["polish_attempts"]
        assert len(row["polish_attempt_failed"]) == row["polish_attempts"]
        # A journey is retried exactly while its rewrites fail; the kept one passed the guard.
        assert all(row["polish_attempt_failed"][:-1])
        assert (row["polish_status"] == "polished") == (row["polish_attempt_failed"][-1] == [])
        assert row["text"] == (row["polished_text"].strip() if row["polish_status"] == "polished" else RAW)
    assert all(r.max_tokens == budget for r in engine.requests)
    assert stats["attempts_made"]["2"] >= 1
    for t in ("a", "b"):  # each attempt has the seed of its number; the retries carry their feedback
        first, *retries = asked(engine.requests, t)
        assert [r.seed for r in (first, *retries)] == seeds_by_attempt(cfg, t, rows[t]["polish_attempts"])
        assert "rejected" not in user_turn(first)
        assert all("Your last rewrite was rejected:\n- " in user_turn(r) for r in retries)
    assert sum(stats["passed_by_attempt"].values()) == stats["polished"]
    assert stats["polished"] + stats["fallback"] == stats["polish_attempted"] == 2
    assert sum(stats["tokens_by_attempt"].values()) == stats["polish_tokens"] > 0
    assert stats["cut_at_budget"] == sum(
        f[0].startswith("budget: cut") for t in ("a", "b") for f in rows[t]["polish_attempt_failed"] if f
    )

    again = run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet", opener=opener)

    assert len(opened) == 1  # every attempt came from the response cache: the engine never opened
    assert again["engines"]["local"]["cache_hits"] == len(engine.requests)
    assert rows_by_id(tmp_path / "p.parquet") == rows
