"""A response cache in front of any engine, one SQLite file per shard and stage.

A rerun, or a resume after a crash, replays answered requests from the cache and sends only the rest;
the engine itself is opened only when something is missing, so a fully cached rerun never loads a
model. One file per shard keeps cluster jobs from sharing a database on a network filesystem.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline.engines.base import Completion, Engine, EngineStats, Request, generate_async

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT NOT NULL,
    sample INTEGER NOT NULL,
    completion TEXT NOT NULL,
    PRIMARY KEY (key, sample)
)
"""


def request_key(model: str, request: Request) -> str:
    """Model, prompt and every sampling setting: anything that changes the answer changes the key."""
    payload = json.dumps([model, asdict(request)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """Completions stored per (request key, sample index) in one SQLite file.

    One connection shared by the stage's threads (a judge called from a worker thread while the
    tree search runs on the event loop), each statement under a lock.
    """

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(_SCHEMA)
        self.db.commit()

    def lookup(self, key: str, n: int) -> list[Completion] | None:
        """All n samples of a request, or None when any is missing."""
        with self.lock:
            rows = self.db.execute(
                "SELECT completion FROM completions WHERE key = ? AND sample < ? ORDER BY sample",
                (key, n),
            ).fetchall()
        if len(rows) < n:
            return None
        return [Completion(**json.loads(c)) for (c,) in rows]

    def store(self, key: str, completions: list[Completion]) -> None:
        """Failed calls are not stored, so a rerun retries them."""
        if any(c.finish_reason == "error" for c in completions):
            return
        with self.lock:
            self.db.executemany(
                "INSERT OR REPLACE INTO completions (key, sample, completion) VALUES (?, ?, ?)",
                [(key, i, json.dumps(asdict(c))) for i, c in enumerate(completions)],
            )

    def commit(self) -> None:
        with self.lock:
            self.db.commit()

    def close(self) -> None:
        with self.lock:
            self.db.close()


class CachedEngine:
    """An engine behind the cache: hits are served from it, misses go to the engine in one batch."""

    def __init__(self, label: str, open_engine: Callable[[], Engine], cache: ResponseCache):
        self.label = label
        self._open = open_engine
        self._engine: Engine | None = None
        self.cache = cache
        self.cache_hits = 0
        self.cache_hit_tokens = 0

    @property
    def stats(self) -> EngineStats:
        """The real engine's work (zero when everything came from the cache), plus the cache hits."""
        work = self._engine.stats.as_dict() if self._engine is not None else EngineStats().as_dict()
        return EngineStats(
            **{**work, "cache_hits": self.cache_hits, "cache_hit_tokens": self.cache_hit_tokens}
        )

    @property
    def facts(self) -> dict:
        """Where the engine ran; nothing when it never opened (every reply came from the cache)."""
        return getattr(self._engine, "facts", {}) if self._engine is not None else {}

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        keys, results, missing = self._lookup(requests)
        if missing:
            fresh = self._inner().generate([requests[i] for i in missing])
            self._store(keys, results, missing, fresh)
        return results  # type: ignore[return-value]

    async def agenerate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        keys, results, missing = self._lookup(requests)
        if missing:
            fresh = await generate_async(self._inner(), [requests[i] for i in missing])
            self._store(keys, results, missing, fresh)
        return results  # type: ignore[return-value]

    def _inner(self) -> Engine:
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def _lookup(self, requests: Sequence[Request]) -> tuple[list[str], list, list[int]]:
        keys = [request_key(self.label, r) for r in requests]
        results = [self.cache.lookup(k, r.n) for k, r in zip(keys, requests)]
        missing = [i for i, r in enumerate(results) if r is None]
        self.cache_hits += len(requests) - len(missing)
        self.cache_hit_tokens += sum(c.tokens for r in results if r is not None for c in r)
        return keys, results, missing

    def _store(self, keys: list[str], results: list, missing: list[int], fresh) -> None:
        for i, completions in zip(missing, fresh):
            results[i] = completions
            self.cache.store(keys[i], completions)
        # Committed per call (a sibling group's, or a level's): a kill loses only calls in flight.
        self.cache.commit()

    def __getattr__(self, name: str):
        # Other engine calls (a PRM's token probabilities, prompt rendering) are deterministic
        # prefills, cheap to redo: they go to the engine uncached.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner(), name)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def merge_cache(source: str | Path, target: str | Path) -> int:
    """Copy the answered requests of one cache file into another (kept where the target has them);
    returns how many samples the target gained."""
    ResponseCache(target).close()  # creates the file and its table when there is none yet
    db = sqlite3.connect(str(target))
    try:
        before = db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        db.execute("ATTACH DATABASE ? AS source", (str(source),))
        db.execute("INSERT OR IGNORE INTO completions SELECT key, sample, completion FROM source.completions")
        db.commit()
        return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] - before
    finally:
        db.close()
