"""Final answers: extraction from a step, and checking against the reference with math-verify."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

BOXED = "\\boxed{"


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, nested braces included; None when there is none.

    >>> extract_boxed("so 3 + 4 = 7, and the answer is \\\\boxed{\\\\frac{7}{1}}.")
    '\\\\frac{7}{1}'
    >>> extract_boxed("no answer yet") is None
    True
    """
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(BOXED)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def _verify(pair: tuple[str, str], timeout_s: int) -> bool:
    from math_verify import parse, verify

    gold_text, answer = pair
    # Wrapping both in \boxed{} makes math-verify read them as the final answers they are.
    gold = parse(f"${BOXED}{gold_text}}}$", parsing_timeout=timeout_s)
    pred = parse(f"${BOXED}{answer}}}$", parsing_timeout=timeout_s)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=timeout_s))


def _verify_batch(pairs: list[tuple[str, str]], timeout_s: int) -> list[bool]:
    out = []
    for pair in pairs:
        try:
            out.append(_verify(pair, timeout_s))
        except Exception:  # noqa: BLE001 - a reference or answer math-verify cannot read is not a match
            out.append(False)
    return out


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
            self.pool.submit(_verify_batch, [], timeout_s)

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (reference, answer): does the answer verify against the reference (gold first)?"""
        pairs = list(pairs)
        if not pairs:
            return []
        size = max(1, -(-len(pairs) // self.workers))
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        futures = [self.pool.submit(_verify_batch, c, self.timeout_s) for c in chunks]
        return [ok for f in futures for ok in f.result()]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def __enter__(self) -> AnswerChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
