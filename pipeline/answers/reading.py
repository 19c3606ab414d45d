"""What math-verify makes of a reference or an answer, whether to trust it, and the verdict per pair.

math-verify times out with SIGALRM: call these in a process's main thread (pipeline/answers/__init__.py runs
them in worker processes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline.answers.extract import BOXED, extract_final_answer
from pipeline.answers.forms import (
    closed_class_answer,
    equivalent_forms,
    is_text,
    normalize_notation,
    text_key,
    written_atoms,
)

# How a form reads: math (math-verify reads it faithfully), text (words: compared as text),
# suspicious (math-verify reads something much smaller than the text), unreadable (it reads nothing).
KINDS = ("math", "text", "suspicious", "unreadable")


@dataclass(frozen=True)
class Reading:
    text: str  # the form as compared, plain-text notations rewritten
    kind: str  # one of KINDS
    why: str = ""  # for suspicious and unreadable forms: what math-verify made of it


@dataclass(frozen=True)
class Verdict:
    """Whether an answer matches a reference, and what decided it.

    checker: "math-verify", "text" (compared as words), "judge" (the LLM answer judge), or
    "undecided" (correct is None; reason says why, and counts as not correct).
    """

    correct: bool | None
    checker: str
    reason: str = ""


def misreading(form: str, expr) -> str:
    """Why math-verify's reading `expr` of `form` is not the form; "" when it is.

    Two tests, neither tuned to a notation: the reading holds letters the text only has inside
    words (a word read as a product of letters), or it is a fragment of the text (everything it
    holds is copied from the text, and it holds at most half of the text's numbers and variables).
    """
    import sympy

    if expr.has(sympy.zoo, sympy.nan):
        return f"is read as the undefined value {expr}"
    variables, numbers = written_atoms(form)
    symbols = {str(s).lower() for s in expr.atoms(sympy.Symbol)}
    foreign = {s for s in symbols if s.isalpha() and s not in variables and f"\\{s}" not in form.lower()}
    if foreign:
        return f"is read as {expr}: its words become products of letters"
    read = {s for s in symbols if len(s) == 1} | {
        float(n) for n in expr.atoms(sympy.Number) if n.is_finite and n.is_real
    }
    written = variables | numbers
    if len(written) >= 2 and read <= written and 2 * len(read) <= len(written):
        return f"is read as {expr}, a fragment of the text"
    return ""


@lru_cache(maxsize=4096)
def read_form(form: str, timeout_s: int) -> tuple[Reading, tuple]:
    """One form's reading and math-verify's parse of it (empty unless the form reads as math)."""
    from math_verify import parse

    text = normalize_notation(form.strip())
    if is_text(text):
        return Reading(text, "text"), ()
    # Boxed, so math-verify reads the whole form as the final answer it is.
    parsed = parse(f"${BOXED}{text}}}$", parsing_timeout=timeout_s)
    expr = next((p for p in parsed if not isinstance(p, str)), None)
    if expr is None:
        return Reading(text, "unreadable", "is not read by math-verify"), ()
    why = misreading(text, expr)
    if why:
        return Reading(text, "suspicious", why), ()
    return Reading(text, "math"), tuple(parsed)


def reference_forms(reference: str) -> list[str]:
    """The equivalent forms of a reference; one written as a sentence gives those of the answer it
    states.

    >>> reference_forms("The answer is 17.")
    ['17']
    >>> reference_forms("C(10, 5), or equivalently 252")
    ['C(10, 5)', '252']
    """
    return equivalent_forms(extract_final_answer(reference, unboxed=True) or reference)


def read_reference(reference: str, timeout_s: int) -> list[Reading]:
    """The reading of each equivalent form of a reference."""
    return [read_form(f, timeout_s)[0] for f in reference_forms(reference)]


def reference_kind(readings: list[Reading]) -> str:
    """One kind for a whole reference: unreadable when no form reads at all, else the least
    trustworthy reading among the forms that read (a suspicious form is worth a look even when
    another form decides).

    >>> reference_kind([Reading("s", "suspicious"), Reading("m", "math")])
    'suspicious'
    >>> reference_kind([Reading("u", "unreadable"), Reading("m", "math")])
    'math'
    """
    kinds = {r.kind for r in readings} - {"unreadable"}
    return next((k for k in ("suspicious", "text", "math") if k in kinds), "unreadable")


def decide(reference: str, answer: str, timeout_s: int) -> Verdict:
    """Does the answer match any form of the reference? Math forms go to math-verify, text forms
    are compared as text; a form that cannot be trusted, or an answer that cannot, decides nothing.
    A match with any form is correct; otherwise a form that decides "no" makes it incorrect."""
    from math_verify import verify

    answer_reading, answer_parse = read_form(answer, timeout_s)
    reasons, wrong_by = [], ""
    for form in reference_forms(reference):
        reading, parse = read_form(form, timeout_s)
        if reading.kind == "text":
            key, answer_key = text_key(reading.text), text_key(answer)
            same = answer_key == key or closed_class_answer(key, answer_key)
            if same:
                return Verdict(True, "text")
            if same is False:
                wrong_by = wrong_by or "text"
            else:
                reasons.append(f"the answer is not the text reference {reading.text!r}")
        elif reading.kind == answer_reading.kind == "math":
            if verify(list(parse), list(answer_parse), timeout_seconds=timeout_s):
                return Verdict(True, "math-verify")
            wrong_by = wrong_by or "math-verify"
        elif _writing(reading.text) == _writing(answer_reading.text):
            return Verdict(True, "text")  # the same writing, whatever math-verify makes of it
        elif reading.kind != "math":
            reasons.append(f"the reference {reading.text!r} {reading.why}")
        else:
            reasons.append(f"the answer {answer_reading.why or 'is text where the reference is math'}")
    if wrong_by:
        return Verdict(False, wrong_by)
    return Verdict(None, "undecided", "; ".join(dict.fromkeys(reasons)))


def _writing(text: str) -> str:
    """Text with the spacing around symbols dropped: "n = 2" and "n=2" are one writing, "at least"
    and "a t l e a s t" are not."""
    return " ".join(re.sub(r"\s*([^\w\s])\s*", r"\1", text).split())
