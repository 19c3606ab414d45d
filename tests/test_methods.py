"""Thoughts methods besides the tree walk: propose-critique and debate (pipeline/methods/), the
per-method thoughts stage and its merge, on scripted engines and on the embedded model."""

from __future__ import annotations

import asyncio
import json

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.answers import AnswerChecker
from pipeline.config import SCHEMA, ConfigError, load
from pipeline.engines.base import Completion, EngineStats
from pipeline.formats.build import training_thoughts
from pipeline.io.tables import POLISHED_SCHEMA, PROBLEM_SCHEMA, THOUGHT_SCHEMA, read_table, write_table
from pipeline.methods import METHODS, method_module
from pipeline.run_stats import stage_stats
from pipeline.stages.polish import run_polish
from pipeline.stages.thoughts import merge_thoughts, run_method
from pipeline.testing.vllm_server import served_engine
from tests.conftest import EASY_PROBLEMS
from tests.fake_engine import SharedEngine
from tests.snakemake_run import snakemake, write_config

ADD = {"problem_id": "add", "problem": "What is 2 + 3?", "answer": "5", "source": "t", "meta": "{}"}
PENS = {"problem_id": "pens", "problem": "Sara has 2 pens and gets 2 more. How many?", "answer": "4"}
PENS = {**PENS, "source": "t", "meta": "{}"}


def act(action: str, to_step: int = 0, reason: str = "Because.") -> str:
    return json.dumps({"action": action, "to_step": to_step, "reason": reason})


def judge(verdict: str, rationale: str = "Fine.") -> str:
    return json.dumps({"verdict": verdict, "rationale": rationale})


class Scripted:
    """Answers each problem's requests from its own script, per role (policy = continue the assistant
    turn, judge = a JSON-schema reply), in order; records every call's batch."""

    label = "scripted"

    def __init__(self, scripts: dict[str, dict[str, list[str]]]):
        self.scripts = {pid: {role: list(r) for role, r in s.items()} for pid, s in scripts.items()}
        self.batches: list[list] = []
        self.stats = EngineStats()

    def _problem(self, request) -> str:
        user = [c for role, c in request.messages if role == "user"][-1]
        return next(pid for pid, p in PROBLEM_TEXT.items() if p in user)

    def generate(self, requests):
        self.stats.calls += 1
        self.batches.append(list(requests))
        out = []
        for r in requests:
            role = "judge" if r.json_schema else "policy"
            out.append([Completion(self.scripts[self._problem(r)][role].pop(0), 5, "stop")])
        return out

    def close(self) -> None:
        pass


PROBLEM_TEXT = {"add": ADD["problem"], "pens": PENS["problem"]}


class OnePool:
    def __init__(self, engine):
        self.engine = engine

    def get(self, name):
        return self.engine


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


def build(method: str, scripts: dict, problems=(ADD,), checker=None, **section):
    key = method.replace("-", "_")
    cfg = load(overrides={key: section} if section else None)
    engine = Scripted(scripts)
    rows, stats = method_module(method).build(cfg, list(problems), OnePool(engine), checker)
    return {r["problem_id"]: r for r in rows}, stats, engine


def assistant_turn(request) -> str:
    return request.messages[-1][1]


# --- propose-critique -----------------------------------------------------------------------------


def test_backtrack_to_a_named_step_keeps_the_dropped_steps_in_the_thought(checker):
    script = {
        "policy": ["We add 2 and 3.", "Then we double it: 10.", "2 + 3 = 5, so the answer is \\boxed{5}."],
        "judge": [act("continue"), act("backtrack", 1, "Doubling is not asked for."), act("terminate")],
    }
    rows, stats, engine = build("propose-critique", {"add": script}, checker=checker)

    row = rows["add"]
    paragraphs = row["text"].split("\n\n")
    assert paragraphs[:2] == ["We add 2 and 3.", "Then we double it: 10."]
    assert "Doubling is not asked for." in paragraphs[2] and "We add 2 and 3" in paragraphs[2]
    assert paragraphs[3] == "2 + 3 = 5, so the answer is \\boxed{5}."
    assert row["steps"] == [script["policy"][0], script["policy"][1], script["policy"][2]]
    assert (row["n_backtracks"], row["n_reflections"], row["correct"], row["answer"]) == (1, 1, True, "5")
    assert (row["method"], row["kind"], row["thought_id"]) == (
        "propose-critique",
        "journey",
        "add/propose-critique/journey-0",
    )
    # The policy continues from the live path: the dropped step is gone, the reflection is there.
    last_policy = engine.batches[4][0]
    assert "Then we double it" not in assistant_turn(last_policy)
    assert assistant_turn(last_policy).startswith("We add 2 and 3.\n\n") and "Doubling" in assistant_turn(
        last_policy
    )
    assert row["engine_tokens"] == 6 * 5
    assert stats["actions"] == {"continue": 1, "backtrack": 1, "terminate": 1}
    assert (stats["yield"], stats["backtracks"], stats["malformed_actions"]) == (1.0, 1, 0)


def test_malformed_action_is_counted_and_treated_as_continue(checker):
    script = {
        "policy": ["We add 2 and 3.", "2 + 3 = 5, so the answer is \\boxed{5}.", "So it is \\boxed{5}."],
        # not JSON; then a backtrack to a step that does not exist; then terminate
        "judge": ["continue please", act("backtrack", 7), act("terminate")],
    }
    rows, stats, engine = build("propose-critique", {"add": script}, checker=checker)

    assert stats["malformed_actions"] == 2
    assert stats["malformed_by_reason"] == {
        "not JSON": 1,
        "backtrack to step 7, which is not before the last step": 1,
    }
    assert stats["actions"] == {"continue": 2, "terminate": 1}
    # continue means: the next paragraph is a plain step, no reflection, nothing dropped
    assert rows["add"]["n_reflections"] == rows["add"]["n_backtracks"] == 0
    assert rows["add"]["steps"] == script["policy"] and rows["add"]["correct"] is True


def test_a_wrong_terminate_gets_the_negative_signal_and_must_reflect(checker):
    script = {
        "policy": ["2 + 3 = 6, so the answer is \\boxed{6}.", "I added wrong.", "2 + 3 = 5, so \\boxed{5}."],
        "judge": [act("terminate"), act("continue"), act("terminate")],
    }
    rows, stats, engine = build("propose-critique", {"add": script}, checker=checker)

    action_prompt = engine.batches[1][0].messages[-1][1]  # after a step with an answer, the model hears of it
    assert "Step 1 gives the final answer 6: choose terminate" in action_prompt
    signal = "Hmm, the answer 6 is wrong, so I made a mistake somewhere."
    assert assistant_turn(engine.batches[2][0]).endswith(signal + " ")  # the 2nd policy call opens with it
    row = rows["add"]
    assert row["text"].split("\n\n")[1] == f"{signal} I added wrong."
    assert row["steps"] == ["2 + 3 = 6, so the answer is \\boxed{6}.", "2 + 3 = 5, so \\boxed{5}."]
    assert (row["correct"], row["answer"], row["n_reflections"]) == (True, "5", 1)
    assert stats["wrong_answers"] == 1 and stats["ended_by"] == {"verified": 1}


def test_budget_and_retries_end_a_problem_with_correct_false(checker):
    steps = {"policy": ["We add.", "We add more.", "Still adding."], "judge": [act("continue")] * 3}
    wrong = {"policy": ["So \\boxed{7}."], "judge": [act("terminate")]}
    rows, stats, _ = build(
        "propose-critique", {"add": steps, "pens": wrong}, (ADD, PENS), checker, max_steps=3, max_retries=0
    )

    assert (rows["add"]["correct"], rows["add"]["n_steps"]) == (False, 3)
    assert (rows["pens"]["correct"], rows["pens"]["answer"]) == (False, "7")
    assert stats["ended_by"] == {"budget": 1, "retries": 1}
    assert (stats["yield"], stats["problems_with_verified_thought"]) == (0.0, 0)


def test_each_problem_stops_at_its_own_terminate_with_one_request_per_call(checker):
    short = {"policy": ["2 + 3 = 5, so \\boxed{5}."], "judge": [act("terminate")]}
    long = {
        "policy": ["Sara has 2.", "She gets 2.", "2 + 2 = 4, so \\boxed{4}."],
        "judge": [act("continue")] * 2,
    }
    long["judge"].append(act("terminate"))
    rows, stats, engine = build("propose-critique", {"add": short, "pens": long}, (ADD, PENS), checker)

    assert all(len(b) == 1 for b in engine.batches)  # a call per problem and step, batched by the engine
    calls = [engine._problem(b[0]) for b in engine.batches]
    assert (calls.count("add"), calls.count("pens")) == (2, 6)  # one policy and one action call per step
    assert stats["rounds"] == 3 and stats["policy_calls"] == stats["action_calls"] == 4
    seeds = [r.seed for b in engine.batches for r in b]
    assert len(set(seeds)) == len(seeds)  # each problem, step and role its own seed
    assert stats["yield"] == 1.0 and stats["steps"] == 4


class SlowScripted(Scripted):
    """Scripted answers on an event loop: every call about the `slow` problem takes `delay` seconds;
    `events` keeps ("start" | "end", problem) in the order they happen."""

    def __init__(self, scripts, slow: str, delay: float):
        super().__init__(scripts)
        self.slow, self.delay = slow, delay
        self.events: list[tuple[str, str]] = []

    async def agenerate(self, requests):
        problem = self._problem(requests[0])
        self.events.append(("start", problem))
        await asyncio.sleep(self.delay if problem == self.slow else 0)
        self.events.append(("end", problem))
        return self.generate(requests)


LONG_AND_SHORT = {
    "propose-critique": {
        "pens": {
            "policy": ["Sara has 2.", "She gets 2.", "2 + 2 = 4, so \\boxed{4}."],
            "judge": [act("continue"), act("continue"), act("terminate")],
        },
        "add": {"policy": ["2 + 3 = 5, so \\boxed{5}."], "judge": [act("terminate")]},
    },
    "debate": {
        "pens": {
            "policy": ["Sara has 2.", "She gets 2.", "2 + 2 = 4, so \\boxed{4}."],
            "judge": [judge("continue"), judge("continue")],
        },
        "add": {"policy": ["2 + 3 = 5, so \\boxed{5}."], "judge": []},  # verified: no critic call
    },
}


@pytest.mark.parametrize("method", ["propose-critique", "debate"])
def test_a_long_problem_does_not_hold_back_one_that_ends_at_its_first_step(method, checker):
    scripts = LONG_AND_SHORT[method]
    cfg = load()
    engine = SlowScripted(scripts, slow="pens", delay=0.2)
    rows, stats = method_module(method).build(cfg, [PENS, ADD], OnePool(engine), checker)

    # Every call about add starts and ends while pens's first call (0.2 s) is still out.
    first_slow_end = engine.events.index(("end", "pens"))
    assert [i for i, e in enumerate(engine.events) if e[1] == "add"][-1] < first_slow_end
    assert rows[1]["correct"] and rows[1]["n_steps"] == 1 and rows[0]["correct"] and rows[0]["n_steps"] == 3
    # The order calls finish in changes nothing: the same rows as one call at a time.
    inline, inline_stats, _ = build(method, scripts, (PENS, ADD), checker)
    assert [inline["pens"], inline["add"]] == rows
    assert inline_stats == stats


# --- debate ---------------------------------------------------------------------------------------


def test_debate_critic_rationale_becomes_the_reflection_and_the_next_step_the_correction(checker):
    script = {
        "policy": [
            "We multiply 2 and 3.",
            "We add 2 and 3.",
            "2 + 3 = 6, so \\boxed{6}.",
            "2 + 3 = 5, so \\boxed{5}.",
        ],
        # step 1 backtrack, step 2 continue, step 3 (wrong answer) passed, step 4 verified: no call
        "judge": [
            judge("backtrack", "The problem asks for a sum, not a product."),
            judge("continue"),
            judge("continue"),
        ],
    }
    rows, stats, engine = build("debate", {"add": script}, checker=checker)

    row = rows["add"]
    paragraphs = row["text"].split("\n\n")
    assert paragraphs[0] == "We multiply 2 and 3."
    assert "The problem asks for a sum, not a product." in paragraphs[1]
    assert paragraphs[2] == "We add 2 and 3."
    assert "The answer 6 is wrong." in paragraphs[4]
    assert paragraphs[5] == "2 + 3 = 5, so \\boxed{5}."
    assert (row["n_backtracks"], row["n_reflections"], row["correct"], row["method"]) == (
        2,
        2,
        True,
        "debate",
    )
    # the correction continues from the live path, without the wrong step
    assert "multiply" not in assistant_turn(engine.batches[2][0]).split("\n\n")[0]
    assert [len(b) for b in engine.batches] == [1, 1, 1, 1, 1, 1, 1]  # the verified step needs no critic
    assert stats["verdicts"] == {"backtrack": 1, "continue": 2}
    assert stats["wrong_answers_passed_by_critic"] == 1


def test_debate_malformed_verdict_continues_and_the_budget_ends_it(checker):
    script = {"policy": ["We add.", "We add more."], "judge": ['{"verdict": "maybe"}', "no json"]}
    rows, stats, _ = build("debate", {"add": script}, checker=checker, max_steps=2)

    assert rows["add"]["correct"] is False and rows["add"]["n_backtracks"] == 0
    assert stats["malformed_verdicts"] == 2 and stats["ended_by"] == {"budget": 1}


# --- config, merge, polish and export ------------------------------------------------------------


def test_methods_config_is_validated():
    assert load().thoughts.methods == ["tree"]
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["thoughts"]["properties"]["methods"]["items"]["enum"] == list(METHODS)
    for methods, why in (
        ([], "should be non-empty"),
        (["tree", "tree"], "non-unique"),
        (["walk"], "is not one of"),
    ):
        with pytest.raises(ConfigError, match=f"config field thoughts.methods.*{why}"):
            load(overrides={"thoughts": {"methods": methods}})
    with pytest.raises(ConfigError, match="config field debate.critic_engine: no engine named 'judge'"):
        load(overrides={"debate": {"critic_engine": "judge"}})
    with pytest.raises(ConfigError, match="config field propose_critique.engine: no engine named 'x'"):
        load(overrides={"propose_critique": {"engine": "x"}})
    cfg = load(overrides={"engines": {"big": {"kind": "vllm", "model": "m"}}, "critic": {"engine": "big"}})
    assert cfg.debate.critic_engine == "big"  # the critic agent defaults to the critic's engine


def thought(pid: str, method: str, kind: str = "journey", correct: bool = True) -> dict:
    return {
        "problem_id": pid,
        "thought_id": f"{pid}/{method}/{kind}",
        "kind": kind,
        "problem": "What is 2 + 3?",
        "reference": "5",
        "text": "2 + 3 = 5, so \\boxed{5}.",
        "steps": ["2 + 3 = 5, so \\boxed{5}."],
        "n_steps": 1,
        "n_backtracks": 0,
        "answer": "5",
        "seed": 1,
        "method": method,
        "n_reflections": 0,
        "correct": correct,
        "engine_tokens": 3,
    }


def test_merge_follows_the_configured_order_and_nests_stats_per_method(tmp_path):
    parts = {}
    for method, wall in (("propose-critique", 2.0), ("tree", 1.0)):
        parts[method] = tmp_path / method / "shard-00000.parquet"
        write_table([thought("add", method)], THOUGHT_SCHEMA, parts[method])
        stats = {"wall_s": wall, "engine_tokens": 3 if method != "tree" else 0, "backtracks": 1}
        parts[method].with_name("shard-00000.stats.json").write_text(json.dumps(stats))
    cfg = load(overrides={"thoughts": {"methods": ["tree", "propose-critique"]}})

    out = tmp_path / "shard-00000.parquet"
    stats = merge_thoughts(cfg, parts, out)

    assert [r["method"] for r in read_table(out, THOUGHT_SCHEMA).to_pylist()] == ["tree", "propose-critique"]
    assert set(stats["methods"]) == {"tree", "propose-critique"} and stats["wall_s"] == 3.0
    # Shards' merged stats add up key by key, nested ones too (the export stage's stats.json).
    other = tmp_path / "shard-00001.parquet"
    merge_thoughts(cfg, parts, other)
    summed = stage_stats([out, other])
    assert summed["methods"]["propose-critique"]["engine_tokens"] == 6 and summed["engine_tokens"] == 6


def test_polish_and_export_skip_solutions_and_unverified_journeys(tmp_path):
    rows = [
        thought("a", "outcome", "solution"),
        thought("b", "debate", correct=False),
        thought("c", "debate"),
    ]
    rows.append(thought("d", "tree", "shortcut"))
    write_table(rows, THOUGHT_SCHEMA, tmp_path / "t.parquet")
    cfg = load(overrides={"polish": {"enabled": False}})
    run_polish(cfg, tmp_path / "t.parquet", tmp_path / "p.parquet")

    polished = read_table(tmp_path / "p.parquet", POLISHED_SCHEMA).to_pylist()
    assert [r["text"] for r in polished] == [r["text"] for r in rows]
    journeys, shortcuts = training_thoughts(polished)
    assert [r["problem_id"] for r in journeys] == ["c"] and [r["problem_id"] for r in shortcuts] == ["d"]


# --- the real snakemake, two methods --------------------------------------------------------------


@pytest.mark.snakemake
def test_snakemake_runs_two_methods_and_merges_them_before_polish_and_export(server_url, tmp_path):
    # Served by the session's vLLM server: the jobs, not the engine kind, are what is tested here.
    endpoint = served_engine(server_url)
    config = write_config(
        tmp_path,
        "methods",
        EASY_PROBLEMS[:2],
        engines={"endpoint": endpoint},
        thoughts={"methods": ["tree", "propose-critique"]},
        policy={"engine": "endpoint", "width": 2, "max_depth": 2},
        critic={"engine": "endpoint"},
        polish={"enabled": False},
        propose_critique={**SMALL["propose_critique"], "engine": "endpoint"},
    )
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]

    out = tmp_path / "outputs" / "methods"
    shard = "shard-00000.parquet"
    parts = {
        m: read_table(out / "thoughts" / m / shard, THOUGHT_SCHEMA).to_pylist()
        for m in ("tree", "propose-critique")
    }
    merged = read_table(out / "thoughts" / shard, THOUGHT_SCHEMA).to_pylist()
    assert merged == parts["tree"] + parts["propose-critique"]
    assert {r["method"] for r in merged} == {"tree", "propose-critique"}
    assert len(parts["propose-critique"]) == 2 and all(
        r["engine_tokens"] > 0 for r in parts["propose-critique"]
    )
    assert (out / "logs" / "thoughts" / "propose-critique" / "shard-00000.log").is_file()

    stats = json.loads((out / "stats.json").read_text())
    methods = stats["stages"]["thoughts"]["methods"]
    assert set(methods) == {"tree", "propose-critique"}
    assert methods["propose-critique"]["problems"] == 2 and methods["propose-critique"]["engine_tokens"] > 0
    # The journey file takes the verified journeys of both methods, nothing else.
    journeys = pq.read_table(out / "sft" / "journey.parquet").to_pylist()
    usable = [r["thought_id"] for r in merged if r["kind"] == "journey" and r["correct"]]
    assert [j["thought_id"] for j in journeys] == usable
    assert (out / "report" / "index.html").is_file()


# --- the embedded model in vLLM ------------------------------------------------------------------


SMALL = {
    "propose_critique": {"max_steps": 4, "max_step_tokens": 40, "action_max_tokens": 48, "max_retries": 1},
    "debate": {"max_steps": 4, "max_step_tokens": 40, "critic_max_tokens": 64},
}


class StreamingShared(SharedEngine):
    """SharedEngine through the engine's own agenerate: the problems' calls share the running batch."""

    async def agenerate(self, requests):
        self.requests.extend(requests)
        return await self.engine.agenerate(requests)


@pytest.mark.parametrize("method", ["propose-critique", "debate"])
def test_method_on_the_embedded_model_writes_thoughts_and_reruns_from_the_cache(
    method, vllm_engine, tmp_path
):
    shared = StreamingShared(vllm_engine)
    problems = [{**p, "source": "t", "meta": "{}"} for p in EASY_PROBLEMS[:2]]
    write_table(problems, PROBLEM_SCHEMA, tmp_path / "problems.parquet")
    cfg = load(overrides=SMALL)
    out = tmp_path / method / "shard-00000.parquet"

    stats = run_method(cfg, method, tmp_path / "problems.parquet", out, opener=lambda settings: shared)

    rows = read_table(out, THOUGHT_SCHEMA).to_pylist()
    assert [r["problem_id"] for r in rows] == [p["problem_id"] for p in problems]
    for r in rows:
        assert r["method"] == method and r["kind"] == "journey" and r["text"] and r["n_steps"] >= 1
        assert r["text"].count("\n\n") + 1 == r["n_steps"] + r["n_reflections"]
        assert r["engine_tokens"] > 0 and r["n_steps"] <= 4
    assert stats["problems_with_verified_thought"] == sum(r["correct"] for r in rows)
    assert stats["engine_tokens"] == sum(r["engine_tokens"] for r in rows)
    assert stats["rounds"] <= 4 and stats["engines"]["local"]["cache_hits"] == 0
    sent = len(shared.requests)
    # One request per call, each problem's own: policy steps and the judge's (action or critic) calls.
    assert sent == stats["policy_calls"] + stats.get("action_calls", 0) + stats.get("critic_calls", 0)
    assert sent > 0 and json.loads(out.with_name("shard-00000.stats.json").read_text())["wall_s"] > 0

    # A rerun (or a resume after a kill) replays the cache beside the output: the model sees nothing.
    again = tmp_path / "again" / "shard-00000.parquet"
    again.parent.mkdir()
    out.with_name("shard-00000.cache.sqlite").replace(again.with_name("shard-00000.cache.sqlite"))
    rerun = run_method(cfg, method, tmp_path / "problems.parquet", again, opener=lambda settings: shared)
    assert len(shared.requests) == sent and rerun["engines"]["local"]["requests"] == 0
    assert rerun["engines"]["local"]["cache_hits"] == sent
    assert pq.read_table(again).equals(pq.read_table(out))
