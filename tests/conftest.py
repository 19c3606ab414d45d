"""Shared fixtures: one in-process vLLM engine on the embedded model for the whole session."""

from __future__ import annotations

import pytest

from pipeline.engines.base import EngineSettings
from pipeline.model_files import EMBEDDED_MODEL

EASY_PROBLEMS = [
    {"problem_id": "pens", "problem": "Sara has 2 pens and gets 2 more. How many pens does she have?", "answer": "4"},
    {"problem_id": "add-2-3", "problem": "What is 2 + 3?", "answer": "5"},
    {"problem_id": "add-4-4", "problem": "What is 4 + 4?", "answer": "8"},
]


@pytest.fixture(scope="session")
def vllm_engine():
    from pipeline.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(EngineSettings(name="local", kind="vllm", model=EMBEDDED_MODEL))
    yield engine
    engine.close()
