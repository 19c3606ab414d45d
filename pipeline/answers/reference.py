"""The final answer in a dataset's reference field, which often holds a worked solution: the answer
after a final `####` line (GSM8K), the content of its \\boxed{} (MATH), or the field as it is.

Pure string functions. A field that gives no single final answer is refused (UnreadableReference),
never guessed: the problems stage makes it a reject, so no number from the middle of a solution
becomes the answer that leaves are checked against.
"""

from __future__ import annotations

import re

from pipeline.answers.extract import Box, boxes
from pipeline.answers.forms import MATH_NAMES

ANSWER_FORMATS = ("auto", "plain", "gsm8k", "boxed")
READINGS = ("plain", "gsm8k", "boxed")  # how an accepted field was read

MARKER = "####"
# English thousands separators only: "1,000" and "12,345.5", never "1,2", "0,5" or "(1,2)".
_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
# What a lone answer may carry around its box: math delimiters, spacing, a full stop.
_WRAPPING = re.compile(r"[\s$.,;:!]|\\[()\[\]]")
# Math is one unit when counting statements: its line breaks and full stops end no sentence.
_MATH_SPAN = re.compile(
    r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{([A-Za-z]+\*?)\}.*?\\end\{\1\}", re.S
)
_STATEMENT_END = re.compile(r"\n|(?<=[.!?])\s+")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


class UnreadableReference(ValueError):
    """A field that gives no single final answer; `kind` is the countable part of the reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


def read_reference_field(field: str, answer_format: str = "auto") -> tuple[str, str]:
    """The final answer in a reference field, and how it was read (one of READINGS).

    >>> read_reference_field("48/2 = <<48/2=24>>24 clips in May.\\n48+24 = <<48+24=72>>72 in all.\\n#### 72")
    ('72', 'gsm8k')
    >>> read_reference_field("So $x = 2$, and the answer is $\\\\boxed{2}$. Check: $\\\\boxed{3}$ fails.")
    Traceback (most recent call last):
    ...
    pipeline.answers.reference.UnreadableReference: its boxes give different answers: \\boxed{2}, \\boxed{3}
    >>> read_reference_field("So $x = 2$, and the answer is $\\\\boxed{2}$.")
    ('2', 'boxed')
    >>> [read_reference_field(f) for f in ["5", "$\\\\boxed{5}$", "The answer is 17.", "C(10, 5), or equivalently 252"]]
    [('5', 'plain'), ('$\\\\boxed{5}$', 'plain'), ('The answer is 17.', 'plain'), ('C(10, 5), or equivalently 252', 'plain')]
    >>> read_reference_field("#### 1,000"), read_reference_field("(1,2)\\n#### (1,2)", "gsm8k")
    (('1000', 'gsm8k'), ('(1,2)', 'gsm8k'))
    >>> read_reference_field("She sold 24 in May. So 72 in all.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.answers.reference.UnreadableReference: a worked solution (2 sentences or lines) with no final ...
    """
    text = field.strip()
    if answer_format == "plain":
        return text, "plain"
    if answer_format == "gsm8k":
        if MARKER not in text and boxes(text):
            raise UnreadableReference(
                "no #### answer line",
                "answer_format gsm8k: the field has no '#### <answer>' line, but a \\boxed{} "
                "(answer_format boxed or auto reads it)",
            )
        return _after_marker(text), "gsm8k"
    if answer_format == "boxed":
        found = boxes(text)
        if not found and _ends_with_marker(text):
            raise UnreadableReference(
                "no box",
                "answer_format boxed: the field has no \\boxed{} or \\fbox{}, but ends with a "
                "'#### <answer>' line (answer_format gsm8k or auto reads it)",
            )
        return _one_box(text, found), "boxed"
    if answer_format != "auto":
        raise ValueError(f"answer_format {answer_format!r} is not one of {', '.join(ANSWER_FORMATS)}")
    return _read_auto(text)


def _read_auto(text: str) -> tuple[str, str]:
    """A final #### line, else the boxes of a worked solution, else the field as it is."""
    found = boxes(text)
    if _ends_with_marker(text):
        answer = _after_marker(text)
        # Two final answers in one field, one boxed and one after ####: which is right is a guess.
        boxed = {_key(_numeral(b.content)) for b in found if b.content}
        if boxed - {_key(answer)}:
            raise UnreadableReference(
                "#### and boxes disagree",
                f"the answer after #### ({answer!r}) is not what its boxes give: {_listed(text, found)}",
            )
        return answer, "gsm8k"
    if found:
        answer = _one_box(text, found)
        outside = "".join(text[a.end : b.start] for a, b in zip([Box(0, 0, ""), *found], found))
        # A lone box ("\boxed{5}", "$\boxed{5}$.") is an answer as datasets write it, read as today.
        if not _WRAPPING.sub("", outside + text[found[-1].end :]):
            return text, "plain"
        return answer, "boxed"
    if MARKER in text:
        raise UnreadableReference("#### not at the end", _marker_not_last(text))
    statements = _statements(text)
    if statements >= 2:
        # Refused rather than kept as a prose reference: math-verify would read a number out of it
        # (the misreading check only catches some), an unmarked solution's final number is a guess,
        # and a weak answer judge calls most pairs equivalent. A reject is listed with its reason
        # and costs no tree; a user who trusts the judge opts in with answer_format: plain.
        raise UnreadableReference(
            "worked solution without a final answer",
            f"a worked solution ({statements} sentences or lines) with no final answer marked by a "
            "#### line or a \\boxed{}: any number read from it could come from the middle; set "
            "problems.answer_format: plain to use the field as it is",
        )
    return text, "plain"


def _ends_with_marker(text: str) -> bool:
    return MARKER in text.rsplit("\n", 1)[-1]


def _after_marker(text: str) -> str:
    """The answer after the last #### of a field whose last line holds it (GSM8K's layout)."""
    if MARKER not in text:
        raise UnreadableReference(
            "no #### answer line", "answer_format gsm8k: the field has no '#### <answer>' line"
        )
    if not _ends_with_marker(text):
        raise UnreadableReference("#### not at the end", _marker_not_last(text))
    answer = text.rsplit(MARKER, 1)[1].strip()
    if not answer:
        raise UnreadableReference("empty #### answer", "nothing follows the field's last ####")
    return _numeral(answer)


def _marker_not_last(text: str) -> str:
    after = text[text.rfind(MARKER) :].split("\n")[1:]
    lines = sum(1 for line in after if line.strip())
    return (
        f"its last #### is followed by {lines} more line{'s' * (lines != 1)}, so what follows it "
        "need not be the final answer"
    )


def _numeral(answer: str) -> str:
    return answer.replace(",", "") if _THOUSANDS.fullmatch(answer) else answer


def _one_box(text: str, found: list[Box]) -> str:
    """The answer all of a field's boxes give; refused when they give none, or several."""
    if not found:
        raise UnreadableReference("no box", "answer_format boxed: the field has no \\boxed{} or \\fbox{}")
    if found[-1].content is None:
        where = text[found[-1].start :][:40]
        raise UnreadableReference("unclosed box", f"a box that never closes: {where!r}")
    if not all(b.content for b in found):
        raise UnreadableReference("empty box", f"an empty box among {_listed(text, found)}")
    # A last-box rule would read "\boxed{2} ... \boxed{3}" as 3; the solution may mean either.
    if len({_key(b.content) for b in found}) > 1:
        raise UnreadableReference(
            "boxes disagree", f"its boxes give different answers: {_listed(text, found)}"
        )
    return found[-1].content


def _key(answer: str) -> str:
    return "".join(answer.split())


def _listed(text: str, found: list[Box]) -> str:
    return ", ".join(dict.fromkeys(text[b.start : b.end] for b in found))


def _statements(text: str) -> int:
    """Sentences and lines that say something: words outside math, or an equation."""
    plain = _MATH_SPAN.sub(" $ ", text)
    return sum(
        1
        for piece in _STATEMENT_END.split(plain)
        if "=" in piece or any(w.lower() not in MATH_NAMES for w in _WORD.findall(piece))
    )
