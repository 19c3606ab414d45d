"""What the polisher changed: a word-level diff of the raw and polished thought, as escaped HTML."""

from __future__ import annotations

import difflib
import re

from pipeline.report.html import esc


def word_diff(before: str, after: str) -> str:
    """Words only in `before` as <del>, only in `after` as <ins>; whitespace kept as written.

    >>> word_diff("2 + 2 = 5, wait <no>", "2 + 2 = 4, wait <no>")
    '2 + 2 = <del>5,</del><ins>4,</ins> wait &lt;no&gt;'
    """
    a, b = re.split(r"(\s+)", before), re.split(r"(\s+)", after)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(esc("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{esc(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{esc(''.join(b[j1:j2]))}</ins>")
    return "".join(out)
