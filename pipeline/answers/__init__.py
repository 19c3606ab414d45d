"""Final answers: the stages' entry point for extracting them (pipeline/answers/extract.py) and for
checking them against the reference, in math-verify worker processes.

A reference may list equivalent forms ("C(10, 5), or equivalently 252"); each is read by math-verify
(math) or compared as words (text), and one that math-verify misreads decides nothing (see
pipeline/answers/reading.py). What decided is the verdict's checker, stored per node as
answer_checker: "math-verify", "text", "judge" (pipeline/answers/judge.py) or "undecided" (counts as
not correct); "no answer" for a terminal node without a final answer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from pipeline.answers.extract import extract_boxed, extract_final_answer
from pipeline.answers.reading import KINDS, Reading, Verdict, decide, read_reference, reference_kind

__all__ = [
    "NO_ANSWER",
    "AnswerChecker",
    "Verdict",
    "extract_boxed",
    "extract_final_answer",
    "read_references",
    "reference_stats",
]

NO_ANSWER = "no answer"
LISTED = 20  # problem ids listed per kind of untrusted reference in the stats


def _decide_batch(pairs: list[tuple[str, str]], timeout_s: int) -> list[Verdict]:
    out = []
    for reference, answer in pairs:
        try:
            out.append(decide(reference, answer, timeout_s))
        except Exception as exc:  # noqa: BLE001 - one pair math-verify chokes on decides nothing
            out.append(Verdict(None, "undecided", f"the check failed: {type(exc).__name__}: {exc}"))
    return out


def _read_batch(references: list[str], timeout_s: int) -> list[list[Reading]]:
    return [read_reference(r, timeout_s) for r in references]


async def verdicts_async(checker: AnswerChecker, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
    """`checker.averdicts`, so an event loop's other work goes on while the workers check; a test's
    stand-in checker with only `verdicts` is called inline."""
    averdicts = getattr(checker, "averdicts", None)
    return await averdicts(pairs) if averdicts else checker.verdicts(pairs)


async def verifies(checker: AnswerChecker, reference: str, answer: str) -> bool:
    """One answer's check on an event loop (undecided is no); a stand-in with only `check` inline."""
    if getattr(checker, "averdicts", None) is None:
        return checker.check([(reference, answer)])[0]
    (verdict,) = await checker.averdicts([(reference, answer)])
    return verdict.correct is True


class AnswerChecker:
    """math-verify in worker processes.

    math-verify enforces its timeouts with SIGALRM, which only works in a process's main thread;
    pool workers run tasks there, and the stage's own process (with vLLM's threads) stays clear of it.
    """

    def __init__(self, workers: int = 1, timeout_s: int = 5):
        self.timeout_s = timeout_s
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self.workers = workers
        # Start the workers (and their math-verify import) now, overlapping the model load,
        # instead of inside the first tree level that checks an answer.
        for _ in range(workers):
            self.pool.submit(_decide_batch, [("1", "1")], timeout_s)

    def _submit(self, fn, items: list) -> list:
        size = max(1, -(-len(items) // self.workers))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        return [self.pool.submit(fn, c, self.timeout_s) for c in chunks]

    def _map(self, fn, items: list) -> list:
        return [out for f in self._submit(fn, items) for out in f.result()] if items else []

    def verdicts(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        """For each (reference, answer): correct, incorrect or undecided, and what decided."""
        return self._map(_decide_batch, list(pairs))

    async def averdicts(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        """verdicts for callers on an event loop, which runs on while the workers check."""
        if not pairs:
            return []
        done = await asyncio.gather(*map(asyncio.wrap_future, self._submit(_decide_batch, list(pairs))))
        return [out for chunk in done for out in chunk]

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (reference, answer): does the answer match the reference? Undecided is no."""
        return [v.correct is True for v in self.verdicts(pairs)]

    def read(self, references: Sequence[str]) -> list[list[Reading]]:
        """How each reference's forms read (math, text, suspicious, unreadable)."""
        return self._map(_read_batch, list(references))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def __enter__(self) -> AnswerChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_references(references: Sequence[str], timeout_s: int) -> list[list[Reading]]:
    """read_reference for many references: in this process when it may use SIGALRM (its main
    thread), else in a worker process."""
    if threading.current_thread() is threading.main_thread():
        return _read_batch(list(references), timeout_s)
    with AnswerChecker(1, timeout_s) as checker:
        return checker.read(references)


def reference_stats(problem_ids: Sequence[str], references: Sequence[str], timeout_s: int) -> dict:
    """How a problem set's references read: problems per kind (see reading.reference_kind),
    how many list equivalent forms, and the first ids of those the check cannot trust."""
    unique = list(dict.fromkeys(references))  # datasets repeat short answers; each reads once
    by_text = dict(zip(unique, read_references(unique, timeout_s)))
    readings = [by_text[r] for r in references]
    kinds = [reference_kind(r) for r in readings]
    listed = {
        k: [pid for pid, kind in zip(problem_ids, kinds) if kind == k] for k in ("unreadable", "suspicious")
    }
    return {
        "kinds": {k: kinds.count(k) for k in KINDS},
        "with_equivalent_forms": sum(len(r) > 1 for r in readings),
        "unreadable_ids": listed["unreadable"][:LISTED],
        "suspicious_ids": listed["suspicious"][:LISTED],
    }
