"""How far a long stage has got: a tqdm bar on a terminal, otherwise one log line per interval (a
Snakemake log or a SLURM output file would fill up with bar redraws)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter

from tqdm import tqdm

log = logging.getLogger(__name__)

# Seconds between progress lines when stderr is not a terminal.
INTERVAL_S = float(os.environ.get("JOURNEY_PROGRESS_INTERVAL_S", "30"))


class Progress:
    """`done` of `total` units (trees, thoughts), with running counts such as nodes and tokens;
    tokens also show as tokens per second."""

    def __init__(self, desc: str, total: int, unit: str, interval_s: float = INTERVAL_S):
        self.desc, self.total, self.unit = desc, total, unit
        self.interval_s = interval_s
        self.done = 0
        self.counts: Counter = Counter()
        self.start = time.perf_counter()
        # Tokens per second count from the first update on: before it, the engine may still be
        # loading the model (engines open on the first request that misses the cache).
        self._first: tuple[float, int] | None = None
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) if tty else None
        # Lines come from a timer of their own: tied to updates, they came 50-60 s apart when a busy
        # CPU made the updates rare, just when a user wants to see how slow it is.
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the timer thread reads the counts while the stage adds to them
        self._ticker = None
        if self.bar is None:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def update(self, done: int = 0, **counts: int) -> None:
        with self._lock:
            self.done += done
            self.counts.update(counts)
            if self._first is None:
                self._first = (time.perf_counter(), self.counts["tokens"])
        if self.bar is not None:
            self.bar.set_postfix_str(self._rates(), refresh=False)
            self.bar.update(done)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.log()

    def _rates(self) -> str:
        parts = [f"{v} {k}" for k, v in self.counts.items()]
        if self._first is not None and time.perf_counter() - self._first[0] >= 1.0:
            since, before = self._first
            rate = (self.counts["tokens"] - before) / (time.perf_counter() - since)
            parts.append(f"{rate:.1f} tok/s")
        return ", ".join(parts)

    def line(self) -> str:
        """One line, e.g. "trees: 5/16 trees finished, 120 nodes, 9800 tokens, 81.7 tok/s, 120 s"."""
        elapsed = time.perf_counter() - self.start
        with self._lock:
            rates = self._rates()
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} finished"
            + (f", {rates}" if rates else "")
            + f", {elapsed:.0f} s"
        )

    def log(self) -> None:
        log.info(self.line())

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.bar is not None:
            self.bar.close()
        self.log()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
