"""Endpoint faults: a proxy between the pipeline and a real vLLM server injects what real endpoints do."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from pipeline.config import CriticConfig
from pipeline.engines import EngineSettings, Request
from pipeline.engines.openai_engine import OpenAIEngine
from pipeline.scorers.base import StepToScore
from pipeline.scorers.critic import Critic
from tests.fault_proxy import BAD_CRITIC, TRANSIENT, FaultProxy, text_of
from tests.vllm_server import SERVED_MODEL_NAME

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
    assert engine.stats.retries == len(TRANSIENT) + 2
    assert engine.stats.failed == 1
    # The timed-out call waited for the client's timeout; 429 waited for its Retry-After.
    assert elapsed >= 5.0


def test_a_critic_reply_that_is_not_the_json_is_recorded_as_unknown_with_the_reason(proxy):
    engine = engine_through(proxy)
    critic = Critic(engine, CriticConfig(engine="faulty", prompt="prompts/critic.yaml", max_tokens=64))
    steps = ["2 + 3 = 5.", "2 + 3 = 5. [fault:not_json]", "2 + 3 = 5. [fault:missing_field]"]
    items = [StepToScore("What is 2 + 3?", "5", (), step) for step in steps]
    scores, _ = critic.score(items)
    engine.close()

    clean, not_json, missing = scores
    assert clean.verdict in ("correct", "incorrect") and not clean.problem
    assert (not_json.verdict, not_json.score, not_json.problem) == (
        "unknown",
        None,
        "critic reply is not valid JSON",
    )
    assert (missing.verdict, missing.problem) == ("unknown", "critic reply misses field 'rationale'")
    assert proxy.injected == Counter(dict.fromkeys(BAD_CRITIC, 1))
