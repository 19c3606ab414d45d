"""Engines: in-process vLLM or any OpenAI-compatible endpoint behind one protocol."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.engines.base import Completion, Engine, EngineSettings, EngineStats, Request
from pipeline.engines.cache import CachedEngine, ResponseCache


def open_engine(settings: EngineSettings) -> Engine:
    if settings.kind == "vllm":
        from pipeline.engines.vllm_engine import VLLMEngine

        return VLLMEngine(settings)
    if settings.kind == "openai":
        from pipeline.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(settings)
    raise ValueError(f"unknown engine kind {settings.kind!r}")


def cache_path(output: str | Path) -> Path:
    """A stage output's response cache, beside it: shard-00000.parquet -> shard-00000.cache.sqlite."""
    output = Path(output)
    return output.with_name(output.name.split(".")[0] + ".cache.sqlite")


class EnginePool:
    """Opens each named engine once (a policy and a critic on one model share it), behind the
    response cache when one is given; engines open lazily, on the first request the cache misses."""

    def __init__(self, settings: dict[str, EngineSettings], cache: str | Path | None = None):
        self.settings = settings
        self.cache = ResponseCache(cache) if cache is not None else None
        self.open: dict[str, Engine] = {}

    def get(self, name: str) -> Engine:
        if name not in self.open:
            s = self.settings[name]
            if self.cache is None:
                self.open[name] = open_engine(s)
            else:
                self.open[name] = CachedEngine(s.model, lambda: open_engine(s), self.cache)
        return self.open[name]

    def stats(self, names: Iterable[str]) -> dict[str, dict]:
        return {n: self.open[n].stats.as_dict() for n in dict.fromkeys(names) if n in self.open}

    def close(self) -> None:
        for engine in self.open.values():
            engine.close()
        self.open.clear()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "Completion",
    "Engine",
    "EnginePool",
    "EngineSettings",
    "EngineStats",
    "Request",
    "cache_path",
    "open_engine",
]
