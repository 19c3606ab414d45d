"""Engines: in-process vLLM or any OpenAI-compatible endpoint behind one protocol."""

from __future__ import annotations

from typing import Iterable

from pipeline.engines.base import Completion, Engine, EngineSettings, EngineStats, Request


def open_engine(settings: EngineSettings) -> Engine:
    if settings.kind == "vllm":
        from pipeline.engines.vllm_engine import VLLMEngine

        return VLLMEngine(settings)
    if settings.kind == "openai":
        from pipeline.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(settings)
    raise ValueError(f"unknown engine kind {settings.kind!r}")


class EnginePool:
    """Opens each named engine once, so a policy and a critic on the same model share one instance."""

    def __init__(self, settings: dict[str, EngineSettings]):
        self.settings = settings
        self.open: dict[str, Engine] = {}

    def get(self, name: str) -> Engine:
        if name not in self.open:
            self.open[name] = open_engine(self.settings[name])
        return self.open[name]

    def stats(self, names: Iterable[str]) -> dict[str, dict]:
        return {n: self.open[n].stats.as_dict() for n in dict.fromkeys(names) if n in self.open}

    def close(self) -> None:
        for engine in self.open.values():
            engine.close()
        self.open.clear()

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Completion", "Engine", "EnginePool", "EngineSettings", "EngineStats", "Request", "open_engine"]
