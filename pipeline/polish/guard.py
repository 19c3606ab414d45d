"""The polish guard: a rewrite is kept only if it still says everything the raw thought said."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def missing_steps(steps: list[str], polished: str, min_similarity: float) -> list[int]:
    """Indices of steps with no fuzzy match (rapidfuzz partial_ratio) in the polished text.

    >>> missing_steps(["2 + 3 = 5", "so the answer is 5"], "First, 2 + 3 = 5. So the answer is 5.", 80)
    []
    >>> missing_steps(["2 + 3 = 6"], "We know 2 + 3 = 5.", 95)
    [0]
    """
    target = normalize(polished)
    return [i for i, s in enumerate(steps) if fuzz.partial_ratio(normalize(s), target) < min_similarity]


def out_of_order(steps: list[str], text: str, min_similarity: float) -> int | None:
    """Index of the first step whose best fuzzy match lies before the previous found step's, or None.

    Steps with no match are missing_steps' business and are skipped here.

    >>> out_of_order(["I try 2 + 3 = 6", "so 2 + 3 = 5"], "I try 2 + 3 = 6. Wait. So 2 + 3 = 5.", 80)
    >>> out_of_order(["I try 2 + 3 = 6", "the sum is 5"], "The sum is 5. Earlier: I try 2 + 3 = 6.", 80)
    1
    """
    target = normalize(text)
    last = -1
    for i, step in enumerate(steps):
        match = fuzz.partial_ratio_alignment(normalize(step), target)
        if match is None or match.score < min_similarity:
            continue
        if match.dest_start < last:
            return i
        last = match.dest_start
    return None


def instruction_lines(*templates: str, min_words: int = 4) -> tuple[str, ...]:
    """The sentences of prompt templates that carry no slot: what a rewrite must not repeat.

    >>> instruction_lines("Problem: {problem}\\n\\nRewrite the scratch work as fluent reasoning.")
    ('Rewrite the scratch work as fluent reasoning.',)
    """
    sentences = (s.strip() for t in templates for s in re.split(r"(?<=[.!?])\s+|\n", t))
    return tuple(s for s in sentences if "{" not in s and len(s.split()) >= min_words)


def echoed(text: str, instructions: tuple[str, ...]) -> tuple[str, ...]:
    """The instructions a rewrite repeats word for word (a small polisher often ends by echoing them).

    >>> echoed("So 2 + 3 = 5. Rewrite the scratch work as fluent reasoning.",
    ...        ("Rewrite the scratch work as fluent reasoning.", "Keep every step."))
    ('Rewrite the scratch work as fluent reasoning.',)
    """
    target = normalize(text)
    return tuple(i for i in instructions if normalize(i) in target)


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
    echoed: tuple[str, ...] = ()  # prompt instructions the rewrite repeats

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
        if self.echoed:
            failed.append(f"echo: repeats the prompt's instruction {self.echoed[0]!r}")
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
    instructions: tuple[str, ...] = (),
) -> GuardResult:
    """All checks on one polished text; answer_verifies is None when it has no \\boxed{} answer."""
    return GuardResult(
        answer="missing" if answer_verifies is None else "ok" if answer_verifies else "wrong",
        missing=tuple(missing_steps(steps, polished, min_similarity)),
        n_steps=len(steps),
        markers_found=count_markers(polished, markers),
        markers_needed=n_backtracks,
        echoed=echoed(polished, instructions),
    )
