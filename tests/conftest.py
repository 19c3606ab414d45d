"""Shared fixtures: the embedded model in one in-process vLLM engine and one vLLM server, per session."""

from __future__ import annotations

import os

import pytest

from pipeline.engines.base import EngineSettings
from pipeline.model_files import EMBEDDED_MODEL, resolve_model
from tests.vllm_server import vllm_server

EASY_PROBLEMS = [
    {
        "problem_id": "pens",
        "problem": "Sara has 2 pens and gets 2 more. How many pens does she have?",
        "answer": "4",
    },
    {"problem_id": "add-2-3", "problem": "What is 2 + 3?", "answer": "5"},
    {"problem_id": "add-4-4", "problem": "What is 4 + 4?", "answer": "8"},
]


# vLLM on CPU reserves gpu_memory_utilization of NUMA node 0's memory per instance and refuses to
# start when that much is not free: tests keep at most two instances alive and each one small.
# JOURNEY_TEST_MEMORY_FRACTION lowers it where several test runs share one machine.
TEST_MEMORY_FRACTION = float(os.environ.get("JOURNEY_TEST_MEMORY_FRACTION", "0.2"))


@pytest.fixture(scope="module")
def vllm_engine():
    from pipeline.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        EngineSettings(
            name="local", kind="vllm", model=EMBEDDED_MODEL, gpu_memory_utilization=TEST_MEMORY_FRACTION
        )
    )
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def server_url():
    """Base URL of a real vLLM OpenAI-compatible server on 127.0.0.1, stopped after the session."""
    with vllm_server(resolve_model(EMBEDDED_MODEL), memory_fraction=TEST_MEMORY_FRACTION) as url:
        yield url
