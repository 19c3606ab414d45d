"""Shared fixtures: the embedded model in one in-process vLLM engine and one vLLM server, per session."""

from __future__ import annotations

import pytest

from pipeline.config import load
from pipeline.model_files import EMBEDDED_MODEL, resolve_model
from pipeline.testing.vllm_server import vllm_server

EASY_PROBLEMS = [
    {
        "problem_id": "pens",
        "problem": "Sara has 2 pens and gets 2 more. How many pens does she have?",
        "answer": "4",
    },
    {"problem_id": "add-2-3", "problem": "What is 2 + 3?", "answer": "5"},
    {"problem_id": "add-4-4", "problem": "What is 4 + 4?", "answer": "8"},
]


# What a test needs beyond Python: marked, so a developer can leave it out. Tests that need none of
# them are marked `fast`: `pytest -m fast` is the quick loop (README, Tests).
NEEDS = ("vllm", "server", "snakemake", "browser", "torch", "cluster")
# Fixtures that start one of them, for the tests that use them (directly or through another fixture).
FIXTURE_NEEDS = {"vllm_engine": "vllm", "server_url": "server", "smol": "vllm"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, need in FIXTURE_NEEDS.items():
            if fixture in item.fixturenames:
                item.add_marker(need)
        if not any(item.get_closest_marker(n) for n in NEEDS):
            item.add_marker("fast")


@pytest.fixture(scope="module")
def vllm_engine():
    from pipeline.engines.vllm_engine import VLLMEngine

    # The default config's local engine: its KV cache sized by `kv_cache_gib: auto`, so a test's
    # engine and a server (or a second test run) fit side by side. One per module, not per session:
    # any other engine closed in this process tears down vLLM's process-wide parallel groups, and a
    # session engine then fails its next step ("pipeline model parallel group is not initialized").
    engine = VLLMEngine(load().engines["local"])
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def server_url():
    """Base URL of a real vLLM OpenAI-compatible server on 127.0.0.1, stopped after the session."""
    with vllm_server(resolve_model(EMBEDDED_MODEL)) as url:
        yield url
