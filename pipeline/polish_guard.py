"""The polish guard: a rewrite is kept only if it still says everything the raw thought said."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def missing_steps(steps: list[str], polished: str, min_similarity: float) -> list[int]:
    """Indices of steps with no fuzzy match (rapidfuzz partial_ratio) in the polished text.

    >>> missing_steps(["2 + 3 = 5", "so the answer is 5"], "First, 2 + 3 = 5. So the answer is 5.", 80)
    []
    >>> missing_steps(["2 + 3 = 6"], "We know 2 + 3 = 5.", 95)
    [0]
    """
    target = _normalize(polished)
    return [i for i, s in enumerate(steps) if fuzz.partial_ratio(_normalize(s), target) < min_similarity]


def count_markers(text: str, markers: list[str]) -> int:
    """Occurrences of backtrack markers, as whole words.

    >>> count_markers("Wait, that's wrong. Hmm. Let me go back.", ["wait", "hmm", "let me go back"])
    3
    """
    pattern = r"\b(?:" + "|".join(re.escape(m) for m in markers) + r")\b"
    return len(re.findall(pattern, text, flags=re.IGNORECASE))


@dataclass(frozen=True)
class GuardResult:
    failed: tuple[str, ...]  # names of failed checks, with details

    @property
    def ok(self) -> bool:
        return not self.failed


def guard_checks(
    polished: str,
    steps: list[str],
    n_backtracks: int,
    answer_verifies: bool | None,
    *,
    markers: list[str],
    min_similarity: float,
) -> GuardResult:
    """All checks on one polished text; answer_verifies is None when it has no \\boxed{} answer."""
    failed = []
    if answer_verifies is None:
        failed.append("answer: no \\boxed{} answer in the polished text")
    elif not answer_verifies:
        failed.append("answer: the polished answer does not verify against the reference")
    missing = missing_steps(steps, polished, min_similarity)
    if missing:
        failed.append(f"steps: {len(missing)} of {len(steps)} steps not found (first: step {missing[0] + 1})")
    found = count_markers(polished, markers)
    if found < n_backtracks:
        failed.append(f"backtracks: {found} markers for {n_backtracks} backtracks")
    return GuardResult(tuple(failed))
