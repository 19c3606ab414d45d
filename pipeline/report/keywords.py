"""Keyword profile of long thoughts: how often reflective markers occur per 1000 words."""

from __future__ import annotations

import re
from collections.abc import Iterable

KEYWORDS = {
    "wait": re.compile(r"\bwait\b", re.IGNORECASE),
    "alternatively": re.compile(r"\balternatively\b", re.IGNORECASE),
    "therefore": re.compile(r"\btherefore\b", re.IGNORECASE),
    "let me": re.compile(r"\blet\s+me\b", re.IGNORECASE),
}
# Going back on one's own reasoning, in the words the journeys' transitions (prompts/transitions.yaml)
# and their polished rewrites use; "wait" alone is a pause, not a backtrack.
BACKTRACK = re.compile(
    r"\b(?:go(?:ing)?\s+back|step(?:ping)?\s+back|retrac(?:e|ing)|reconsider|start\s+over|made\s+a\s+mistake"
    r"|can't\s+be\s+right|doesn't\s+(?:work|look\s+right|hold\s+up)|(?:try|take)\s+(?:a\s+different|another)\s+"
    r"(?:way|approach|route))\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+(?:'\w+)*")


def word_count(text: str) -> int:
    """Words are runs of letters/digits (an apostrophe inside keeps one word: "let's")."""
    return len(_WORD.findall(text or ""))


def keyword_counts(text: str) -> dict[str, int]:
    return {k: len(p.findall(text or "")) for k, p in KEYWORDS.items()}


def backtrack_count(text: str) -> int:
    """
    >>> backtrack_count("Wait, that can't be right. Let me go back and try another way.")
    3
    >>> backtrack_count("Wait. 2 + 2 = 4.")
    0
    """
    return len(BACKTRACK.findall(text or ""))


def profile(texts: Iterable[str]) -> dict:
    """Total words, keyword counts and counts per 1000 words over all texts (None without words)."""
    words = 0
    counts = dict.fromkeys(KEYWORDS, 0)
    for text in texts:
        words += word_count(text)
        for k, v in keyword_counts(text).items():
            counts[k] += v
    per_1000 = {k: (round(v * 1000 / words, 2) if words else None) for k, v in counts.items()}
    return {"words": words, "counts": counts, "per_1000": per_1000}
