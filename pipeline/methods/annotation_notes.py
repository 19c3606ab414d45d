"""Human annotations of the thinking (seed 003's human-AI collaboration): read, validate, match.

An annotation is a short text, one labelled entry per line: "Attempt: ...", "Reflection: ...",
"Association: ...", "Correction: ...", "Fact: ...", "Answer: ..." (a line without a label continues
the entry above it). A source row matches a shard's problem by id, else by its normalised problem
text. Bad rows never stop the run: each becomes a reject naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.config import AnnotationConfig, ConfigError
from pipeline.io.records import Reject, checked_records, convert_rows, reject_row, text_field
from pipeline.polish.guard import normalize

LABELS = ("attempt", "reflection", "association", "correction", "fact", "answer")
KEPT = ("attempt", "correction")  # the entries the expansion must keep, in order (the guard's steps)


@dataclass(frozen=True)
class Entry:
    label: str  # one of LABELS
    text: str


@dataclass(frozen=True)
class Notes:
    """One valid annotation row."""

    row: int  # 0-based position in the source
    problem_id: str | None
    problem: str | None
    entries: tuple[Entry, ...]

    @property
    def kept(self) -> list[str]:
        """Attempts and corrections, in order: what the expansion must still say."""
        return [e.text for e in self.entries if e.label in KEPT]

    @property
    def reflections(self) -> int:
        return sum(e.label == "reflection" for e in self.entries)

    @property
    def text(self) -> str:
        """The entries as the prompt shows them, one labelled line each."""
        return "\n".join(f"{e.label.capitalize()}: {e.text}" for e in self.entries)


def parse_entries(text: str) -> tuple[Entry, ...]:
    """Labelled entries of an annotation; ValueError says what is wrong with it.

    >>> [e.label for e in parse_entries("Attempt: 2 + 3 = 6.\\nReflection: too big,\\n  I counted 2 too.")]
    ['attempt', 'reflection']
    >>> parse_entries("Attempt: 2 + 3 = 6.\\nReflection: too big,\\n  I counted 2 too.")[1].text
    'too big, I counted 2 too.'
    """
    entries: list[list[str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        label, sep, rest = line.partition(":")
        if sep and label.strip().lower() in LABELS:
            if not rest.strip():
                raise ValueError(f"line {number}: {label.strip()!r} entry has no text")
            entries.append([label.strip().lower(), rest.strip()])
        elif entries:  # a wrapped line continues the entry above
            entries[-1][1] += " " + line
        else:
            expected = ", ".join(f"{name.capitalize()}:" for name in LABELS)
            raise ValueError(f"line {number} has no label (expected one of {expected})")
    if not any(label in KEPT for label, _ in entries):
        raise ValueError("no Attempt: or Correction: entry, so nothing to expand and check")
    return tuple(Entry(label, body) for label, body in entries)


@dataclass
class Loaded:
    notes: list[Notes] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)  # row, problem_id, field, reason, raw
    rows_read: int = 0


def read_notes(ac: AnnotationConfig) -> Loaded:
    """Every source row as Notes or a reject; raises ConfigError naming the annotation field when the
    source cannot be read or a mapped column is in no row."""
    fm = ac.fields
    if fm.id is None and fm.problem is None:
        raise ConfigError(
            "config field annotation.fields: map id or problem (or both) to match rows to problems"
        )
    columns, rows = checked_records(ac.source, ac.subset, ac.split, where="annotation.source")
    if columns:
        _check_columns(ac, columns)
    converted = convert_rows(rows, lambda row: _notes(row, ac))
    rejects = [reject_row(row, rej) for row, rej in converted.rejected]
    return Loaded(converted.accepted, [{**r, "raw": r["raw"][:200]} for r in rejects], converted.rows_read)


def _check_columns(ac: AnnotationConfig, columns: list[str]) -> None:
    """The annotation column must be there, and one of the matching keys (id, problem)."""
    fm, listed = ac.fields, ", ".join(map(str, columns))
    if fm.annotation not in columns:
        raise ConfigError(
            f"config field annotation.fields.annotation: column {fm.annotation!r} is not in {ac.source} "
            f"(columns: {listed})"
        )
    keys = {role: getattr(fm, role) for role in ("id", "problem") if getattr(fm, role) is not None}
    if not any(column in columns for column in keys.values()):
        role, column = next(iter(keys.items()))
        raise ConfigError(
            f"config field annotation.fields.{role}: column {column!r} is not in {ac.source} "
            f"(columns: {listed}); rows are matched to problems by id or by problem text"
        )


def _notes(row, ac: AnnotationConfig) -> Notes:
    if row.error is not None:
        raise row.error
    record, fm = row.record, ac.fields
    if not isinstance(record, dict):
        raise Reject("row", "not an object", f"expected an object, got {type(record).__name__}")
    problem_id = _optional(record, fm.id, "id", numbers_ok=True)
    problem = _optional(record, fm.problem, "problem", numbers_ok=False)
    value = record.get(fm.annotation)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):  # one entry per list item
        value = "\n".join(value)
    text = text_field(value, "annotation", numbers_ok=False)
    try:
        entries = parse_entries(text)
    except ValueError as exc:
        rej = Reject("annotation", "unreadable", str(exc))
        rej.problem_id = problem_id
        raise rej from None
    if problem_id is None and problem is None:
        where = "id" if fm.id else "problem"
        raise Reject(where, "empty or missing", "empty or missing: the row matches no problem")
    return Notes(row.index, problem_id, problem, entries)


def _optional(record: dict, column: str | None, role: str, numbers_ok: bool) -> str | None:
    """A matching key: absent or empty is fine (the other key may match), the wrong type is not."""
    if column is None or record.get(column) in (None, ""):
        return None
    return text_field(record[column], role, numbers_ok)


def match_notes(problems: Iterable[dict], notes: list[Notes]) -> dict[str, list[Notes]]:
    """Problem id -> its annotations (source order), for the given problems; an id match wins over text.

    >>> n = Notes(0, None, " what is 2 +  3? ", (Entry("attempt", "2 + 3 = 5"),))
    >>> list(match_notes([{"problem_id": "a", "problem": "What is 2 + 3?"}], [n]))
    ['a']
    """
    problems = list(problems)
    by_id = {p["problem_id"]: p["problem_id"] for p in problems}
    by_text = {normalize(p["problem"]): p["problem_id"] for p in problems}
    matched: dict[str, list[Notes]] = {}
    for n in notes:
        pid = by_id.get(n.problem_id) if n.problem_id is not None else None
        if pid is None and n.problem is not None:
            pid = by_text.get(normalize(n.problem))
        if pid is not None:
            matched.setdefault(pid, []).append(n)
    return matched
