"""rerun_engine_calls: engine calls a rerun of a finished tree build makes through the response cache."""

from __future__ import annotations

from time import perf_counter

from benchmarks import Figure
from benchmarks.session import Session
from pipeline.engines.cache import CachedEngine, ResponseCache
from pipeline.scorers.critic import Critic
from pipeline.search.builder import TreeBuilder


def run(session: Session) -> Figure:
    first = session.build()
    engine = session.engine
    opened = []

    def open_engine():
        opened.append(True)
        return engine

    calls_before = engine.stats.calls
    cache = ResponseCache(first.cache_file)
    cached = CachedEngine(engine.label, open_engine, cache)
    start = perf_counter()
    nodes = TreeBuilder(session.cfg, cached, Critic(cached, session.cfg.critic), session.checker).build(
        session.problems
    )
    wall = perf_counter() - start
    cache.close()
    return Figure(
        "rerun_engine_calls",
        engine.stats.calls - calls_before,
        "== 0",
        [
            f"engine opened: {'YES' if opened else 'no'}; {cached.cache_hits} requests answered "
            f"from the cache in {wall:.2f} s (first build: {first.wall_s:.2f} s)",
            f"same trees as the first build: {'yes' if nodes == first.nodes else 'NO'}",
        ],
    )
