"""OpenAIEngine against a real vLLM server running SmolLM2-135M-Instruct on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re

import pytest

from pipeline.engines.base import EngineSettings, Request, schema_string
from pipeline.engines.openai_engine import OpenAIEngine
from pipeline.testing.vllm_server import SERVED_MODEL_NAME, free_port

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "rationale": {"type": "string"}},
    "required": ["correct", "rationale"],
    "additionalProperties": False,
}


def make_engine(base_url: str | None, **kwargs) -> OpenAIEngine:
    settings = EngineSettings(
        name="test", kind="openai", model=SERVED_MODEL_NAME, base_url=base_url, **kwargs
    )
    return OpenAIEngine(settings)


@pytest.fixture
def engine(server_url):
    engine = make_engine(server_url)
    yield engine
    engine.close()


def ask(content: str, **kwargs) -> Request:
    return Request.chat([{"role": "user", "content": content}], **kwargs)


def say(word: str, **kwargs) -> Request:
    """A request whose only possible reply is the JSON string "word" (structured output): which
    reply comes back where shows the order whatever the model would write on its own."""
    only = schema_string({"type": "string", "enum": [word]})
    return ask(
        f"Repeat this word exactly, and nothing else: {word}", max_tokens=16, json_schema=only, **kwargs
    )


def test_batch_returns_n_completions_per_request_in_order(engine):
    words = ["apple", "river", "violet"]
    results = engine.generate([say(w, n=3) for w in words])

    assert len(results) == len(words)
    for word, comps in zip(words, results):
        assert len(comps) == 3
        for c in comps:
            assert json.loads(c.text) == word, (word, c)
            assert c.finish_reason == "stop" and not c.error
            assert c.tokens > 0
    stats = engine.stats
    assert (stats.calls, stats.requests, stats.completions) == (1, 3, 9)
    assert stats.prompt_tokens > 0 and stats.engine_s > 0
    assert stats.completion_tokens == sum(c.tokens for comps in results for c in comps)

    # A second batch on the same engine reuses its client and event loop.
    [[again]] = engine.generate([say("river")])
    assert json.loads(again.text) == "river"
    assert engine.stats.calls == 2


def test_continue_final_continues_the_assistant_turn_up_to_the_stop_string(engine):
    prefix = "Sunlight is made of many colours.\n\n"
    request = Request.chat(
        [
            {"role": "user", "content": "Explain in three short paragraphs why the sky is blue."},
            {"role": "assistant", "content": prefix},
        ],
        max_tokens=128,
        stop=("\n\n",),
        continue_final=True,
    )
    [[c]] = engine.generate([request])

    # The paragraph after the prefix, not an empty step (a template that stripped the trailing
    # "\n\n" would make the model emit the stop string first) and not a fresh reply.
    assert c.finish_reason == "stop", c
    assert c.text.strip() and "\n\n" not in c.text
    assert not c.text.startswith(prefix.strip())


def test_json_schema_output_parses_to_a_verdict(engine):
    request = Request.chat(
        [
            {"role": "system", "content": "You are a strict grader. Reply only with JSON."},
            {
                "role": "user",
                "content": "Problem: What is 2 + 3?\nProposed answer: 5\n"
                'Is the proposed answer correct? Reply as {"correct": true or false, '
                '"rationale": "one short sentence"}',
            },
        ],
        max_tokens=200,
        json_schema=schema_string(VERDICT_SCHEMA),
    )
    [[c]] = engine.generate([request])

    if c.finish_reason == "stop":
        verdict = json.loads(c.text)
        assert set(verdict) == {"correct", "rationale"}
        assert isinstance(verdict["correct"], bool) and isinstance(verdict["rationale"], str)
    else:
        # A rationale that rambles to the token limit must be reported as cut off, and the
        # constrained part up to the cut must still follow the schema.
        assert c.finish_reason == "length" and c.tokens == 200, c
        assert re.match(r'\s*\{\s*"correct"\s*:\s*(true|false)\s*,\s*"rationale"\s*:\s*"', c.text)


def test_n_is_emulated_when_the_server_returns_fewer_choices(server_url):
    request = ask("Tell me a fact about cats.", n=3, temperature=1.0, seed=7, max_tokens=16)
    native = make_engine(server_url)
    # Overriding n in the request body makes the real server answer with one choice, exactly
    # like a server that ignores n.
    ignoring_n = make_engine(server_url, extra_body={"n": 1})
    try:
        [native_comps] = native.generate([request])
        [emulated] = ignoring_n.generate([request])
    finally:
        native.close()
        ignoring_n.close()

    for comps in (native_comps, emulated):
        assert len(comps) == 3
        assert all(c.text and c.tokens > 0 and not c.error for c in comps)
    # Seeds seed, seed+1, seed+2: the extra samples are not copies of the first.
    assert len({c.text for c in emulated}) == 3
    # One HTTP call natively, three when emulated: each call pays for the prompt.
    assert ignoring_n.stats.prompt_tokens == 3 * native.stats.prompt_tokens
    assert ignoring_n.stats.completions == 3


def test_a_bad_request_fails_alone_without_breaking_the_batch(engine):
    too_long = ask("hi", max_tokens=10_000)  # beyond --max-model-len 4096: a permanent 400
    [bad], [good] = engine.generate([too_long, say("apple")])

    assert (bad.text, bad.tokens, bad.finish_reason) == ("", 0, "error")
    assert bad.error == "BadRequestError 400"
    assert good.finish_reason == "stop" and json.loads(good.text) == "apple"
    assert engine.stats.completions == 1


def test_unreachable_server_gives_error_completions_without_leaking_the_key(monkeypatch, caplog):
    key = "sk-sentinel-never-show-me"
    monkeypatch.setenv("JOURNEY_TEST_API_KEY", key)
    engine = make_engine(
        f"http://127.0.0.1:{free_port()}/v1",
        api_key_env="JOURNEY_TEST_API_KEY",
        max_retries=1,
        timeout_s=2,
    )
    try:
        with caplog.at_level(logging.WARNING):
            results = engine.generate([ask("a", n=2, temperature=0.5), ask("b")])
    finally:
        engine.close()

    assert [len(comps) for comps in results] == [2, 1]
    for c in (c for comps in results for c in comps):
        assert (c.text, c.tokens, c.finish_reason) == ("", 0, "error")
        assert c.error == "APIConnectionError"
    assert "2 of 2 requests failed" in caplog.text
    assert key not in caplog.text and key not in repr(results)
    assert engine.stats.completions == 0


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("JOURNEY_TEST_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="JOURNEY_TEST_API_KEY"):
        make_engine("http://127.0.0.1:1/v1", api_key_env="JOURNEY_TEST_API_KEY")


def test_continue_final_needs_a_server_that_supports_it():
    engine = make_engine("http://127.0.0.1:1/v1", supports_continue_final=False)
    request = Request.chat(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Step 1."}],
        continue_final=True,
    )
    try:
        with pytest.raises(ValueError, match="continue a partial assistant turn"):
            engine.generate([request])
    finally:
        engine.close()
