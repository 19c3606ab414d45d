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
    """What the guard found in one rewrite: the fields feed a retry's feedback, `failed` the table.

    >>> for f in GuardResult(answer="wrong", missing=(2,), n_steps=4, markers_found=1, markers_needed=2).failed:
    ...     print(f)
    answer: the polished answer does not verify against the reference
    steps: 1 of 4 steps not found (first: step 3)
    backtracks: 1 markers for 2 backtracks
    """

    answer: str  # "ok", "missing" (no \boxed{} answer) or "wrong" (it does not verify)
    missing: tuple[int, ...]  # indices of the raw steps the rewrite lost
    n_steps: int
    markers_found: int
    markers_needed: int

    @property
    def failed(self) -> tuple[str, ...]:
        """Readable names and details of the failed checks ("answer: ...", "steps: ...", "backtracks: ...")."""
        failed = []
        if self.answer == "missing":
            failed.append("answer: no \\boxed{} answer in the polished text")
        elif self.answer == "wrong":
            failed.append("answer: the polished answer does not verify against the reference")
        if self.missing:
            failed.append(
                f"steps: {len(self.missing)} of {self.n_steps} steps not found (first: step {self.missing[0] + 1})"
            )
        if self.markers_found < self.markers_needed:
            failed.append(f"backtracks: {self.markers_found} markers for {self.markers_needed} backtracks")
        return tuple(failed)

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
    return GuardResult(
        answer="missing" if answer_verifies is None else "ok" if answer_verifies else "wrong",
        missing=tuple(missing_steps(steps, polished, min_similarity)),
        n_steps=len(steps),
        markers_found=count_markers(polished, markers),
        markers_needed=n_backtracks,
    )
