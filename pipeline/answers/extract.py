"""Final answers in a step's (or a reference's) text: \\boxed{} content, or an answer a solution's
last sentence states; every box of a text, for references that must give one answer."""

from __future__ import annotations

import re
from typing import NamedTuple

from pipeline.answers.forms import MATH_NAMES

BOXED = "\\boxed{"
FBOX = "\\fbox{"
_BOX = re.compile(re.escape(BOXED) + "|" + re.escape(FBOX))


class Box(NamedTuple):
    start: int  # where its command begins
    end: int  # just past its closing brace (the text's end when it never closes)
    content: str | None  # None: the box never closes


def _closing(text: str, i: int) -> int:
    """Index of the brace closing the one opened just before i; -1 when it never closes."""
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


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
    end = _closing(text, start + len(BOXED))
    return text[start + len(BOXED) : end].strip() if end >= 0 else None


def boxes(text: str) -> list[Box]:
    """Every outermost \\boxed{} and \\fbox{} in order (a box inside a box is its content).

    >>> [b.content for b in boxes("$\\\\boxed{\\\\frac{1}{2}}$, i.e. \\\\fbox{0.5}")]
    ['\\\\frac{1}{2}', '0.5']
    >>> [b.content for b in boxes("\\\\boxed{\\\\boxed{2}} or \\\\boxed{3")]
    ['\\\\boxed{2}', None]
    """
    found: list[Box] = []
    pos = 0
    while match := _BOX.search(text, pos):
        close = _closing(text, match.end())
        if close < 0:
            found.append(Box(match.start(), len(text), None))
            break
        found.append(Box(match.start(), close + 1, text[match.end() : close].strip()))
        pos = close + 1
    return found


# An unboxed final answer is only read from the last sentence of a step, and only in the shapes
# "(so) the answer is V", "so/thus/therefore ... is V" and "so/thus/therefore ... = V".
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")
_CONCLUDE = r"(?:so|thus|therefore|hence|finally|in\s+conclusion)\b[\s,:]*"
_CLAUSE = r"(?:^|[,;]\s*)"
_ANSWER_IS = re.compile(
    rf"{_CLAUSE}(?:{_CONCLUDE})?(?:the\s+)?(?:final\s+)?answer\s+(?:is|=)\s*:?\s*(?P<v>.+)$", re.I
)
_CONCLUSION = re.compile(rf"{_CLAUSE}{_CONCLUDE}(?P<claim>.+)$", re.I)
_VERB = re.compile(r"\s(?:is|equals)\s|=", re.I)
_UNIT = re.compile(r"\s+[A-Za-z]+$")
# Words that continue a sentence: never a unit ("1 when x = 0") or a text answer ("the answer is the").
_FUNCTION_WORDS = frozenset(
    "a an the not that this to of in on by with from when if because since for and or but unless as "
    "where at which so then also".split()
)


def extract_final_answer(step: str, unboxed: bool) -> str | None:
    """The step's final answer: its \\boxed{} content, or, when unboxed, an answer the step's last
    sentence states ("so the minimum is 1", "Therefore, x = 3.", "The answer is No.").

    >>> extract_final_answer("So the answer is \\\\boxed{7}.", unboxed=False)
    '7'
    >>> extract_final_answer("2 + 5 = 7, so the answer is 7.", unboxed=True)
    '7'
    >>> extract_final_answer("Both terms are positive, so the minimum is 1", unboxed=True)
    '1'
    >>> extract_final_answer("Therefore, x = 3.", unboxed=True)
    '3'
    >>> extract_final_answer("The answer is No.", unboxed=True)
    'No'
    >>> extract_final_answer("So the total is $12$ apples.", unboxed=True)
    '12'

    Never from the middle of a step, never without a concluding word, never prose as a value:

    >>> [extract_final_answer(s, unboxed=True) for s in [
    ...     "So the answer is 7. Let me check that.", "x = 3", "So a = 1, b = 2.",
    ...     "So the sum is even.", "So the minimum is 1 when x = 0.", "so the answer is the"]]
    [None, None, None, None, None, None]
    >>> extract_final_answer("so the minimum is 1", unboxed=False) is None
    True
    """
    boxed = extract_boxed(step)
    if boxed is not None or not unboxed:
        return boxed
    sentence = _SENTENCE_END.split(step.strip())[-1].strip().rstrip(".!").strip()
    stated = _ANSWER_IS.search(sentence)
    if stated:
        value = _clean(stated.group("v"))
        words = re.fullmatch(r"[A-Za-z]+(?: [A-Za-z]+){0,2}", value)
        return (
            value if _is_math(value) or (words and value.split()[0].lower() not in _FUNCTION_WORDS) else None
        )
    conclusion = _CONCLUSION.search(sentence)
    verb = _VERB.search(conclusion.group("claim")) if conclusion else None
    if verb is None:
        return None
    # "so x = 2 \cdot 3 = 6": the last of a chain of equal values, each one math;
    # "so a = 1, b = 2" states several results, none of them the answer.
    *chain, value = [_clean(v) for v in conclusion.group("claim")[verb.end() :].split("=")]
    if any(not _is_math(v) or re.search(r"[,;]", v) for v in chain):
        return None
    return value if _is_math(value) else None


def _clean(value: str) -> str:
    """A stated value without markdown, math delimiters, or one trailing unit word ("12 apples")."""
    value = value.strip().strip("*").strip()
    unit = _UNIT.search(value)
    if unit and unit.group().strip().lower() not in _FUNCTION_WORDS and _is_math(value[: unit.start()]):
        value = value[: unit.start()]
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if value.startswith(left) and value.endswith(right) and len(value) > len(left + right):
            value = value[len(left) : -len(right)]
    return value.strip()


def _is_math(value: str) -> bool:
    """A short expression: no prose words, and a digit, a LaTeX command or a lone variable."""
    if not value or len(value) > 60 or value.count("$") % 2:
        return False
    words = re.findall(r"(?<!\\)\b[A-Za-z]{3,}", value)
    if any(w.lower() not in MATH_NAMES for w in words):
        return False
    return bool(re.search(r"\d|\\[A-Za-z]", value) or re.fullmatch(r"[A-Za-z]", value))
