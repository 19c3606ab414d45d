"""Endpoint faults: a proxy between the pipeline and a real vLLM server injects what real endpoints do."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import pytest

from pipeline.config import CriticConfig
from pipeline.engines import EngineSettings, Request
from pipeline.engines.openai_engine import OpenAIEngine
from pipeline.scorers.base import StepToScore
from pipeline.scorers.critic import Critic
from pipeline.testing.vllm_server import SERVED_MODEL_NAME, served_engine
from tests.conftest import EASY_PROBLEMS
from tests.fault_proxy import BAD_CRITIC, TRANSIENT, FaultProxy, body_hash, text_of
from tests.snakemake_run import ROOT, assert_no_secret, shard_rows, snakemake, write_config

pytestmark = pytest.mark.server

_MARKER = re.compile(r"\[fault:(\w+)\]")


def marker_plan(body: dict, attempt: int) -> str | None:
    """The fault a request names in its text: transient ones on the first attempt only."""
    match = _MARKER.search(text_of(body))
    if match is None:
        return None
    fault = match.group(1)
    return None if fault in TRANSIENT and attempt > 1 else fault


@pytest.fixture
def proxy(server_url):
    with FaultProxy(server_url, marker_plan).running() as p:
        yield p


def engine_through(proxy: FaultProxy, timeout_s: float = 5.0) -> OpenAIEngine:
    settings = EngineSettings(
        name="faulty",
        kind="openai",
        model=SERVED_MODEL_NAME,
        base_url=proxy.url,
        timeout_s=timeout_s,
        max_retries=2,
    )
    return OpenAIEngine(settings)


def hello(fault: str | None) -> Request:
    tag = f" [fault:{fault}]" if fault else ""
    return Request.chat([{"role": "user", "content": f"Say hello.{tag}"}], max_tokens=8)


def test_transient_faults_are_retried_and_permanent_ones_become_error_completions(proxy):
    engine = engine_through(proxy)
    faults = [*TRANSIENT, None, "500_always"]
    start = time.perf_counter()
    results = engine.generate([hello(f) for f in faults])
    elapsed = time.perf_counter() - start
    engine.close()

    *recovered, clean, permanent = results
    assert all(c[0].finish_reason != "error" and c[0].text for c in [*recovered, clean])
    assert permanent[0].finish_reason == "error" and permanent[0].error == "InternalServerError 500"
    # One retry per transient fault; the permanent fault used up both retries.
    assert proxy.injected == Counter({**dict.fromkeys(TRANSIENT, 1), "500_always": 3})
    # The engine counts every repeat the wire saw: those, and any call a loaded machine answered after
    # the client's 5 s timeout.
    assert engine.stats.retries == proxy.attempts() - len(faults) >= len(TRANSIENT) + 2
    assert engine.stats.failed == 1
    # The timed-out call waited for the client's timeout; 429 waited for its Retry-After.
    assert elapsed >= 5.0


def test_a_critic_reply_that_is_not_the_json_is_recorded_as_unknown_with_the_reason(proxy):
    # No timeout is injected here: a clean critic reply may take long on a slow or busy CPU.
    engine = engine_through(proxy, timeout_s=120.0)
    critic = Critic(engine, CriticConfig(engine="faulty", prompt="prompts/critic.yaml", max_tokens=64))
    steps = ["2 + 3 = 5.", "2 + 3 = 5. [fault:not_json]", "2 + 3 = 5. [fault:missing_field]"]
    items = [StepToScore("What is 2 + 3?", "5", (), step) for step in steps]
    scores, _ = critic.score(items)
    engine.close()

    clean, not_json, missing = scores
    # The clean reply reached the critic untouched: a verdict, cut at the token limit where the model
    # rambles on (bf16 SmolLM2 on an AMX Xeon does), never one of the injected faults' reasons.
    assert clean.verdict in ("correct", "incorrect")
    assert clean.problem in ("", "critic reply truncated at the token limit"), clean
    assert (not_json.verdict, not_json.score, not_json.problem) == (
        "unknown",
        None,
        "critic reply is not valid JSON",
    )
    assert (missing.verdict, missing.problem) == ("unknown", "critic reply misses field 'rationale'")
    assert proxy.injected == Counter(dict.fromkeys(BAD_CRITIC, 1))


class CyclingPlan:
    """Every kind of fault in turn: the first attempt of 6 in 8 new requests fails transiently,
    1 in 3 critic requests gets a bad reply on every attempt, and a request naming a fault gets it."""

    def __init__(self):
        self.new = 0
        self.critic_replies: dict[int, str | None] = {}

    def __call__(self, body: dict, attempt: int) -> str | None:
        named = marker_plan(body, attempt)
        if named:
            return named
        if attempt == 1:
            self.new += 1
            if self.new % 8 < len(TRANSIENT):
                return TRANSIENT[self.new % 8]
        if "response_format" in body:
            key = body_hash(body)
            if key not in self.critic_replies:
                turn = len(self.critic_replies) % 3
                self.critic_replies[key] = BAD_CRITIC[turn] if turn < len(BAD_CRITIC) else None
            return self.critic_replies[key]
        return None


POISONED = {"problem_id": "poisoned", "problem": "What is 1 + 1? [fault:500_always]", "answer": "2"}


def test_a_run_through_a_faulty_endpoint_completes_and_records_every_permanent_fault(server_url, tmp_path):
    key = "sk-journey-sentinel-faults-9876543210"
    with FaultProxy(server_url, CyclingPlan()).running() as proxy:
        endpoint = {**served_engine(proxy.url), "api_key_env": "JOURNEY_TEST_KEY", "max_retries": 3}
        config = write_config(
            tmp_path,
            "faults",
            [*EASY_PROBLEMS[:2], POISONED],
            engines={
                "faulty": {**endpoint, "timeout_s": 10},
                # A polished thought takes longer than a step: its own timeout, same faults.
                "faulty_polisher": {**endpoint, "timeout_s": 30},
            },
            policy={"engine": "faulty", "width": 3, "max_depth": 3},
            critic={"engine": "faulty"},
            polish={"engine": "faulty_polisher", "max_tokens": 128},
        )
        proc = snakemake("--configfile", str(config), env={**os.environ, "JOURNEY_TEST_KEY": key})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    injected = proxy.injected
    print(f"faults injected: {dict(injected)}; answers forwarded: {proxy.forwarded}")
    assert all(injected[f] >= 1 for f in (*TRANSIENT, *BAD_CRITIC, "500_always")), injected

    out = tmp_path / "outputs" / "faults"
    nodes = shard_rows(out / "trees")
    stats = json.loads((out / "stats.json").read_text())
    # Nothing lost: every problem has its tree, and the poisoned one records why it has no children.
    assert {n["problem_id"] for n in nodes if n["parent_id"] < 0} == {"pens", "add-2-3", "poisoned"}
    poisoned = [n for n in nodes if n["problem_id"] == "poisoned" and n["parent_id"] >= 0]
    assert len(poisoned) == 3
    assert {n["prune_reason"] for n in poisoned} == {"policy call failed: InternalServerError 500"}
    assert stats["prune_reasons"]["policy call failed: InternalServerError 500"] == 3
    # Each bad critic reply is on its node as an unknown verdict with the reason, and in the stats.
    for fault, reason in (
        ("not_json", "critic reply is not valid JSON"),
        ("missing_field", "critic reply misses field 'rationale'"),
    ):
        judged = [n for n in nodes if n["prune_reason"] == f"no score: {reason}"]
        assert len(judged) == proxy.requests_with(fault) and all(n["verdict"] == "unknown" for n in judged)
        assert stats["scorer_problems"][reason] == proxy.requests_with(fault)
    # Every transient fault was retried; the poisoned request used up its retries and failed.
    transient = sum(injected[f] for f in TRANSIENT)
    assert stats["engine_retries"] >= transient + 3
    assert stats["engine_failed_requests"] >= 1
    assert stats["journeys"] >= 1 and stats["problems_valid"] == 3
    # The key went from the environment to the endpoint, and nowhere else.
    assert proxy.authorizations == {f"Bearer {key}"}
    assert_no_secret(key, proc, out, ROOT / ".snakemake")
