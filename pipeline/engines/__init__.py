"""Engines: in-process vLLM or any OpenAI-compatible endpoint behind one protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.engines.base import Completion, Engine, EngineSettings, EngineStats, Request
from pipeline.engines.cache import CachedEngine, ResponseCache


def open_engine(settings: EngineSettings) -> Engine:
    """The engine the settings name: vLLM in-process, or an OpenAI-compatible endpoint."""
    if settings.kind == "vllm":
        from pipeline.engines.vllm_engine import VLLMEngine

        return VLLMEngine(settings)
    if settings.kind == "openai":
        from pipeline.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(settings)
    raise ValueError(f"unknown engine kind {settings.kind!r}")


Opener = Callable[[EngineSettings], Engine]


def cache_path(output: str | Path) -> Path:
    """A stage output's response cache, beside it: shard-00000.parquet -> shard-00000.cache.sqlite."""
    output = Path(output)
    return output.with_name(output.name.split(".")[0] + ".cache.sqlite")


class EnginePool:
    """Opens each named engine once (a policy and a critic on one model share it), behind the
    response cache when one is given; engines open lazily, on the first request the cache misses."""

    def __init__(
        self,
        settings: dict[str, EngineSettings],
        cache: str | Path | None = None,
        opener: Opener = open_engine,
    ):
        self.settings = settings
        self.cache = ResponseCache(cache) if cache is not None else None
        self.opener = opener  # settings -> engine; tests hand in a scripted or shared one
        self.open: dict[str, Engine] = {}

    def get(self, name: str) -> Engine:
        if name not in self.open:
            s = self.settings[name]
            if self.cache is None:
                self.open[name] = self.opener(s)
            else:
                self.open[name] = CachedEngine(s.model, lambda: self.opener(s), self.cache)
        return self.open[name]

    def stats(self, names: Iterable[str]) -> dict[str, dict]:
        """Each opened engine's counters, and where it ran (device, dtype, CPU) once it loaded."""
        return {
            n: {**self.open[n].stats.as_dict(), **getattr(self.open[n], "facts", {})}
            for n in dict.fromkeys(names)
            if n in self.open
        }

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


def merge_engine_stats(parts: Iterable[dict[str, dict]]) -> dict[str, dict]:
    """Per-engine stats of several jobs: counters add up, facts (dtype, device) keep their distinct values.

    >>> merge_engine_stats([{"local": {"calls": 2, "dtype": "float32"}}, {"local": {"calls": 1, "dtype": "float32"}}])
    {'local': {'calls': 3, 'dtype': 'float32'}}
    >>> merge_engine_stats([{"e": {"engine_s": 0.1, "cpu_isa": ["avx2"]}}, {"e": {"engine_s": 0.2, "cpu_isa": ["avx512f"]}}])
    {'e': {'engine_s': 0.3, 'cpu_isa': [['avx2'], ['avx512f']]}}
    """
    merged: dict[str, dict] = {}
    for part in parts:
        for name, counts in part.items():
            into = merged.setdefault(name, {})
            for key, value in counts.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    into[key] = round(into.get(key, 0) + value, 3)
                else:
                    seen = into.setdefault(key, [])
                    if value not in seen:
                        seen.append(value)
    # A fact every job agrees on is shown as itself, not as a list of one.
    return {
        n: {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in c.items()}
        for n, c in merged.items()
    }


__all__ = [
    "Completion",
    "Engine",
    "EnginePool",
    "EngineSettings",
    "EngineStats",
    "Request",
    "cache_path",
    "merge_engine_stats",
    "open_engine",
]
