"""Answers as datasets write them, read as text: equivalent forms, plain-text notations, words.

Pure string functions; what math-verify makes of a form is pipeline/answers/reading.py's job.
"""

from __future__ import annotations

import math
import re

# "X, or equivalently Y", "X, i.e. Y", "X; that is, Y", "X or approximately Y": markers that join
# two writings of one answer. A bare "or" is not one ("x = 2 or x = 3" lists two solutions).
_MARKER = (
    r"(?:or\s+)?(?:equivalently|equivalent\s+to|approximately|approx\.?|roughly|about)"
    r"|i\.\s?e\.|that\s+is|which\s+equals|in\s+other\s+words"
)
_JOINER = re.compile(rf"\s*[,;]\s*(?:(?:{_MARKER})\s*,?\s*)+|\s+or\s+(?:equivalently|approximately)\s+", re.I)
_PAREN_FORM = re.compile(rf"\(\s*(?:{_MARKER}|=|\\approx|≈)\s*,?\s*(.+)\)", re.I | re.S)
_APPROX = re.compile(r"\s*(?:\\approx|≈)\s*")
_OPEN, _CLOSE = "([{", ")]}"

# Function names and LaTeX-free math words that are not prose.
MATH_NAMES = frozenset(
    "sin cos tan cot sec csc sinh cosh tanh arcsin arccos arctan log ln lg exp sqrt max min gcd lcm "
    "mod deg det lim sum prod int binom choose inf infty pi dx dy dz dt".split()
)
_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+")
_LETTERS = re.compile(r"[A-Za-z]+")
_CLOSED_CLASSES = ({"yes", "no"}, {"true", "false"})
_CLOSED_WORDS = frozenset().union(*_CLOSED_CLASSES)
# Sets named by a font (\mathbb{R}): their letter is no variable.
_NAMED_SET = re.compile(r"\\(?:mathbb|mathcal|mathfrak|mathscr)\s*\{[^{}]*\}")


def _depth_zero(text: str) -> list[bool]:
    """For each character: is it outside every bracket?"""
    depth, out = 0, []
    for ch in text:
        if ch in _CLOSE:
            depth = max(0, depth - 1)
        out.append(depth == 0)
        if ch in _OPEN:
            depth += 1
    return out


def equivalent_forms(reference: str) -> list[str]:
    """The writings of one answer a reference lists, split only outside brackets.

    >>> equivalent_forms("C(10, 5), or equivalently 252")
    ['C(10, 5)', '252']
    >>> equivalent_forms("5/14, or approximately 35.7%")
    ['5/14', '35.7%']
    >>> equivalent_forms("\\\\frac{1}{2} (i.e. 0.5)")
    ['\\\\frac{1}{2}', '0.5']
    >>> equivalent_forms("\\\\{(1, 2), (3, 4)\\\\}")
    ['\\\\{(1, 2), (3, 4)\\\\}']
    >>> equivalent_forms("x = 2 or x = 3")
    ['x = 2 or x = 3']
    >>> equivalent_forms("\\\\pi \\\\approx 3.14"), equivalent_forms("x \\\\approx 3.14")
    (['\\\\pi', '3.14'], ['x \\\\approx 3.14'])
    """
    text = reference.strip()
    forms: list[str] = []
    outside = _depth_zero(text)
    # A trailing "(i.e. Y)" is another form; any other parenthesis belongs to the math.
    if text.endswith(")"):
        start = _matching_open(text)
        paren = _PAREN_FORM.fullmatch(text[start:]) if start > 0 else None
        if paren:
            forms += equivalent_forms(paren.group(1))
            text = text[:start].rstrip()
            outside = outside[:start]
    pieces, last = [], 0
    for sep in sorted([*_JOINER.finditer(text), *_APPROX.finditer(text)], key=lambda m: m.start()):
        before = text[last : sep.start()]
        # "x \approx 3.14" names x, it does not give it as an answer: only a value is a form.
        named = sep.re is _APPROX and not re.search(r"[\d\\]", before)
        if outside[sep.start()] and before.strip() and not named:
            pieces.append(before)
            last = sep.end()
    pieces.append(text[last:])
    return [p.strip() for p in pieces if p.strip()] + forms


def _matching_open(text: str) -> int:
    """Index of the bracket that the final ")" closes; -1 when unbalanced."""
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] in _CLOSE:
            depth += 1
        elif text[i] in _OPEN:
            depth -= 1
            if depth == 0:
                return i
    return -1


# ---- plain-text notations math-verify misreads ------------------------------------------------

_BINOM_CALL = re.compile(r"(?<![A-Za-z\\])(?:C|binom|nCr|choose)\s*\(")
_NCK = re.compile(r"(?<![\w.])(\d+)\s*C\s*(\d+)(?![\w.])")
_SQRT_UNICODE = re.compile(r"√\s*(\([^()]*\)|\d+(?:\.\d+)?|[A-Za-z])")
_SQRT_WORD = re.compile(r"(?<![A-Za-z\\])sqrt\s*(\d+(?:\.\d+)?|[A-Za-z])(?![\w(])")
# pi and function names written without their backslash ("ln 2" is otherwise l*n*2).
_BARE_NAME = re.compile(
    r"(?<![A-Za-z\\])(pi|arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|cot|sec|csc|ln|log|exp|gcd|lcm)"
    r"(?![A-Za-z])"
)


def normalize_notation(text: str) -> str:
    """Plain-text notations rewritten as the LaTeX math-verify reads.

    >>> normalize_notation("C(n+1, 2m+1)")
    '\\\\binom{n+1}{2m+1}'
    >>> normalize_notation("binom(10,5) - 10C3")
    '\\\\binom{10}{5} - \\\\binom{10}{3}'
    >>> normalize_notation("2pi + √3 - ln 2")
    '2\\\\pi + \\\\sqrt{3} - \\\\ln 2'
    >>> normalize_notation("6.")
    '6'

    A point written C(3, 4) is no binomial coefficient (4 > 3), so it is left alone:

    >>> normalize_notation("C(3, 4)")
    'C(3, 4)'
    """
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]  # a sentence's full stop, not an ellipsis
    text = _rewrite_binom_calls(text)
    text = _NCK.sub(lambda m: _binom(m.group(1), m.group(2)) or m.group(0), text)
    text = _SQRT_UNICODE.sub(lambda m: "\\sqrt{" + m.group(1).removeprefix("(").removesuffix(")") + "}", text)
    text = _SQRT_WORD.sub(lambda m: "\\sqrt{" + m.group(1) + "}", text)
    return _BARE_NAME.sub(lambda m: f"\\{m.group(1)}" + " " * text[m.end() : m.end() + 1].isalnum(), text)


def _binom(n: str, k: str) -> str | None:
    """\\binom{n}{k}, unless both are numbers that no binomial coefficient takes (k < 0 or k > n)."""
    n, k = n.strip(), k.strip()
    if not n or not k:
        return None
    if _NUMBER.fullmatch(n) and _NUMBER.fullmatch(k) and not 0 <= float(k) <= float(n):
        return None
    return f"\\binom{{{n}}}{{{k}}}"


def _rewrite_binom_calls(text: str) -> str:
    out, pos = [], 0
    for m in _BINOM_CALL.finditer(text):
        if m.start() < pos:
            continue
        args, end = _call_args(text, m.end())
        new = _binom(*args) if len(args) == 2 else None
        if new is not None:
            out.append(text[pos : m.start()] + _rewrite_binom_calls(new))
            pos = end
    return "".join(out) + text[pos:]


def _call_args(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a call whose "(" ends just before start, and the end."""
    depth, args, last = 0, [], start
    for i in range(start, len(text)):
        ch = text[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            if depth == 0:
                return [*args, text[last:i]], i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[last:i])
            last = i + 1
    return [], start


# ---- words and atoms ---------------------------------------------------------------------------


def text_key(text: str) -> str:
    """A text answer as compared: case, LaTeX text macros, punctuation and spacing dropped.

    >>> text_key("\\\\text{No.}") == text_key("no") == text_key(" NO ")
    True
    >>> text_key("Bob and Alice")
    'bob and alice'
    """
    text = _TEXT_MACRO.sub(r" \1 ", text).replace("$", " ")
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def is_text(form: str) -> bool:
    """Is the form words rather than math (Yes/No, names, "no solution")?

    >>> [is_text(f) for f in ["No", "\\\\text{Yes}", "Alice and Bob", "(B)", "x", "mn", "2 and 3", "\\\\infty"]]
    [True, True, True, False, False, False, False, False]
    """
    plain = _TEXT_MACRO.sub(r" \1 ", form).replace("$", " ")
    if not re.fullmatch(r"[\sA-Za-z'.,!?()\-]+", plain):
        return False
    # Two letters are a product ("mn") unless they are a closed-class word ("no").
    words = [w.lower() for w in _LETTERS.findall(plain)]
    return any(len(w) >= 3 and w not in MATH_NAMES for w in words) or text_key(form) in _CLOSED_WORDS


def closed_class_answer(reference_key: str, answer_key: str) -> bool | None:
    """For a yes/no or true/false reference: does the answer's first word agree? None: not that kind.

    >>> closed_class_answer("no", "no there is none"), closed_class_answer("no", "yes")
    (True, False)
    >>> closed_class_answer("no", "0") is None, closed_class_answer("alice", "bob") is None
    (True, True)
    """
    first = answer_key.split(" ", 1)[0]
    for words in _CLOSED_CLASSES:
        if reference_key in words and first in words:
            return first == reference_key
    return None


def written_atoms(form: str) -> tuple[set[str], set[float]]:
    """The variables and numbers a form writes. Letter runs of 3+ that are no math name are prose,
    as are runs of 2+ inside \\text{}; shorter runs are variables ("ab" is a times b, as math reads
    it). The constant e is left out: math-verify reads it as Euler's number.

    >>> [sorted(atoms) for atoms in written_atoms("sum_(i=1)^n i^3")]
    [['i', 'n'], [1.0, 3.0]]
    >>> [sorted(atoms) for atoms in written_atoms("n^2 + n + 1 for n \\\\ge 1, 3 \\\\text{ cm}, \\\\text{(B)}")]
    [['b', 'n'], [1.0, 2.0, 3.0]]
    """
    runs = [r for content in _TEXT_MACRO.findall(form) for r in _LETTERS.findall(content) if len(r) == 1]
    plain = _COMMAND.sub(" ", _TEXT_MACRO.sub(" ", _NAMED_SET.sub(" ", form)))
    runs += [r for r in _LETTERS.findall(plain) if len(r) < 3 and r.lower() not in MATH_NAMES]
    variables = {letter for run in runs for letter in run.lower()}
    return variables - {"e"}, {_number(n) for n in _NUMBER.findall(plain)}


def _number(token: str) -> float:
    value = float(token.replace(",", ""))
    return value if math.isfinite(value) else 0.0
