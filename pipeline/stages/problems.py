"""Problems stage: load a problem set, validate every row, write problem shards and a rejects table.

A bad row never stops the run and is never dropped silently: it becomes a row of rejects.parquet
naming the field at fault and why. Only whole-source problems (a missing file, a column mapping that
does not match the data, no valid row at all) raise.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import numbers
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.answers import reference_stats
from pipeline.config import Config, ConfigError, FieldMap, ProblemsConfig
from pipeline.reference_answers import READINGS, UnreadableReference, read_reference_field
from pipeline.tables import PROBLEM_SCHEMA, REJECT_SCHEMA, write_json, write_table

log = logging.getLogger(__name__)

RAW_CHARS = 2000
WHOLE_ROW = "row"  # the reject's field when the row as a whole is unreadable
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Reject(Exception):
    """Why one row cannot become a problem; `kind` is the countable part of the reason."""

    def __init__(self, field: str, kind: str, reason: str | None = None):
        super().__init__(reason or kind)
        self.field = field
        self.kind = kind
        self.problem_id: str | None = None


@dataclass
class _Row:
    """One input row; `record` is the raw text instead of a mapping when the row could not be parsed."""

    index: int
    record: Any
    error: _Reject | None = None


@dataclass
class _Outcome:
    problems: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    by_reason: Counter = field(default_factory=Counter)
    read_as: Counter = field(default_factory=Counter)  # accepted references, by how each was read
    unread: int = 0  # references rejected as giving no single final answer
    rows_read: int = 0


def run_problems(cfg: Config, out_dir: str | Path) -> dict:
    """Write out_dir/shard-NNNNN.parquet, rejects.parquet and stats.json; return the stats."""
    start = time.monotonic()
    out_dir = Path(out_dir)
    pc = cfg.problems
    columns, rows = _load(pc)
    if columns:
        _check_mapping(pc.fields, columns, pc.source)
    outcome = _validate(rows, pc)
    shards = _write_shards(outcome.problems, pc.shard_size, out_dir)
    rejects_path = out_dir / "rejects.parquet"
    write_table(outcome.rejects, REJECT_SCHEMA, rejects_path)
    answers = reference_stats(
        [p["problem_id"] for p in outcome.problems],
        [p["answer"] for p in outcome.problems],
        cfg.answer_check.timeout_s,
    )
    stats = {
        "source": pc.source,
        "rows_read": outcome.rows_read,
        "problems": len(outcome.problems),
        "rejected": len(outcome.rejects),
        "rejects_by_reason": dict(sorted(outcome.by_reason.items())),
        "reference_read": {how: outcome.read_as[how] for how in READINGS},
        "answers": answers,
        "shards": shards,
        "wall_s": round(time.monotonic() - start, 3),
    }
    write_json(out_dir / "stats.json", stats)
    log.info("references: %s", _read_summary(outcome))
    if outcome.rejects:
        log.warning(
            "%d of %d rows rejected from %s; see %s",
            len(outcome.rejects),
            outcome.rows_read,
            pc.source,
            rejects_path,
        )
    _warn_untrusted(answers)
    if not outcome.problems:
        empty = "; the source holds no rows" if not outcome.rows_read else ""
        raise ValueError(
            f"no valid problems in {pc.source}: {outcome.rows_read} rows read, "
            f"{len(outcome.rejects)} rejected (see {rejects_path}){empty}"
        )
    return stats


def _read_summary(outcome: _Outcome) -> str:
    """One line on how the references were read, e.g. "3 read after ####, 10 as given"."""
    counts = [
        (outcome.read_as["gsm8k"], "read after ####"),
        (outcome.read_as["boxed"], "from the last \\boxed{}"),
        (outcome.read_as["plain"], "as given"),
        (outcome.unread, "rejected as giving no single final answer"),
    ]
    return ", ".join(f"{n} {how}" for n, how in counts if n) or "none read"


def _warn_untrusted(answers: dict) -> None:
    # math-verify decides no leaf against these forms: without answer_check.judge such leaves count
    # as not correct, and a problem with only such forms cannot yield a journey.
    for kind, why in (("unreadable", "math-verify cannot read"), ("suspicious", "math-verify misreads")):
        if answers["kinds"][kind]:
            log.warning(
                "%d reference answers %s (first ids: %s): leaves checked against them go to "
                "answer_check.judge, or stay undecided without one",
                answers["kinds"][kind],
                why,
                ", ".join(answers[f"{kind}_ids"]),
            )


# ---- loading: each loader returns (column names, rows) -------------------------------------------


def _load(pc: ProblemsConfig) -> tuple[list[str], Iterable[_Row]]:
    path = Path(pc.source).expanduser()
    if path.is_file():
        loader = _LOADERS.get(path.suffix.lower())
        if loader is None:
            raise ValueError(
                f"problems.source {pc.source!r}: unsupported file type {path.suffix!r} "
                f"(expected {', '.join(_LOADERS)} or a Hugging Face dataset)"
            )
        return loader(path)
    if path.is_dir() or not _looks_like_file(pc.source):
        return _load_hf(pc)
    raise FileNotFoundError(f"problems.source {pc.source!r}: no such file ({path.resolve()})")


def _looks_like_file(source: str) -> bool:
    # Hub ids ("owner/name") look like relative paths, so only a known suffix or an explicit
    # path prefix makes a missing source a missing file rather than a hub id.
    return Path(source).suffix.lower() in _LOADERS or source.startswith(("/", "./", "../", "~"))


def _read_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes as markers, so the row holding them is rejected by
    # name (see _check_utf8) instead of failing the whole file or being silently altered.
    return path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _load_jsonl(path: Path) -> tuple[list[str], list[_Row]]:
    rows = []
    for index, line in enumerate(_read_text(path).split("\n")):
        if line.strip():
            rows.append(_parse_line(index, line.strip()))
    return _columns(r.record for r in rows if r.error is None), rows


def _parse_line(index: int, line: str) -> _Row:
    try:
        return _Row(index, json.loads(line))
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON on line {index + 1}: {exc.msg} at column {exc.colno}"
        return _Row(index, line, _Reject(WHOLE_ROW, "invalid JSON", reason))


def _load_json(path: Path) -> tuple[list[str], list[_Row]]:
    text = _read_text(path)
    try:
        # An empty file is an empty list, so it fails like an empty jsonl or csv: "holds no rows".
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    records = _json_records(path, data)
    return _columns(records), [_Row(i, r) for i, r in enumerate(records)]


def _json_records(path: Path, data: Any) -> list:
    if isinstance(data, list):
        return data
    lists = [v for v in data.values() if isinstance(v, list)] if isinstance(data, dict) else []
    if len(lists) != 1:
        raise ValueError(
            f'{path}: expected a list of objects, or an object holding one list like {{"data": [...]}}'
        )
    return lists[0]


def _load_csv(path: Path) -> tuple[list[str], list[_Row]]:
    # The csv module rather than pandas: every cell stays the exact string written ("NA", "007"),
    # and a row with the wrong number of cells becomes one reject instead of a failed file.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = next(reader, [])
    rows = []
    for index, cells in enumerate(r for r in reader if r):
        if len(cells) == len(header):
            rows.append(_Row(index, dict(zip(header, cells))))
        else:
            reason = f"expected {len(header)} cells like the header, got {len(cells)}"
            rows.append(_Row(index, cells, _Reject(WHOLE_ROW, "wrong number of cells", reason)))
    return header, rows


def _load_parquet(path: Path) -> tuple[list[str], list[_Row]]:
    table = pq.read_table(path)
    return table.column_names, [_Row(i, r) for i, r in enumerate(table.to_pylist())]


def _load_hf(pc: ProblemsConfig) -> tuple[list[str], Iterator[_Row]]:
    # Imported here: `datasets` is slow to import and only hub ids and dataset folders need it.
    import datasets

    ds = datasets.load_dataset(pc.source, pc.subset, split=pc.split)
    return list(ds.column_names), (_Row(i, r) for i, r in enumerate(ds))


_LOADERS = {".jsonl": _load_jsonl, ".json": _load_json, ".parquet": _load_parquet, ".csv": _load_csv}


def _columns(records: Iterable[Any]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            names.update(dict.fromkeys(record))
    return list(names)


def check_source(pc: ProblemsConfig) -> None:
    """Before any job starts (the Snakefile calls this): a local source must exist and have the mapped
    columns. Raises ConfigError with one line. Hugging Face ids are left to the problems job."""
    if not Path(pc.source).expanduser().is_file() and not _looks_like_file(pc.source):
        return
    try:
        columns, _ = _load(pc)
    except (OSError, ValueError) as exc:
        message = str(exc) if str(exc).startswith("problems.source") else f"problems.source: {exc}"
        raise ConfigError(f"config field {message}") from None
    if columns:
        _check_mapping(pc.fields, columns, pc.source)


def _check_mapping(fm: FieldMap, columns: list[str], source: str) -> None:
    for name in ("problem", "answer", "id"):
        column = getattr(fm, name)
        if column is not None and column not in columns:
            hint = "; set it to null to derive ids from the problem text" if name == "id" else ""
            raise ConfigError(
                f"config field problems.fields.{name}: column {column!r} is not in {source} "
                f"(columns: {', '.join(map(str, columns))}){hint}"
            )


# ---- validation -----------------------------------------------------------------------------------


def _validate(rows: Iterable[_Row], pc: ProblemsConfig) -> _Outcome:
    outcome = _Outcome()
    first_seen: dict[str, int] = {}
    for row in rows:
        if pc.limit is not None and len(outcome.problems) >= pc.limit:
            break
        outcome.rows_read += 1
        try:
            problem, read = _to_problem(row, pc, first_seen)
        except _Reject as rej:
            outcome.rejects.append(_reject_row(row, rej))
            outcome.by_reason[f"{rej.field}: {rej.kind}"] += 1
            outcome.unread += isinstance(rej.__cause__, UnreadableReference)
        else:
            outcome.problems.append(problem)
            outcome.read_as[read] += 1
    return outcome


def _to_problem(row: _Row, pc: ProblemsConfig, first_seen: dict[str, int]) -> tuple[dict, str]:
    """The problem row, and how its reference was read (one of READINGS)."""
    if row.error is not None:
        raise row.error
    record, fm = row.record, pc.fields
    if not isinstance(record, dict):
        raise _Reject(WHOLE_ROW, "not an object", f"expected an object, got {type(record).__name__}")
    _check_utf8(record, fm)
    problem_id = _text(record.get(fm.id), "id", numbers_ok=True) if fm.id else None
    try:
        problem = _text(record.get(fm.problem), "problem", numbers_ok=False)
        _check_length(problem, pc.max_chars)
        field_text = _text(record.get(fm.answer), "answer", numbers_ok=True)
        problem_id = problem_id or derived_id(problem)
        answer, read = _read_answer(field_text, pc.answer_format)
        # After the reference is read: a row rejected for it must not count as an id's first use.
        _check_unique(problem_id, row.index, first_seen, derived=fm.id is None)
    except _Reject as rej:
        rej.problem_id = problem_id
        raise
    # A field read for its final answer stays whole in meta, under its own column's name.
    mapped = {fm.problem, fm.id} | ({fm.answer} if read == "plain" else set())
    meta = {k: v for k, v in record.items() if k not in mapped}
    problem_row = {
        "problem_id": problem_id,
        "problem": problem,
        "answer": answer,
        "source": pc.source,
        "meta": json.dumps(meta, ensure_ascii=False, default=str),
    }
    return problem_row, read


def _read_answer(field_text: str, answer_format: str) -> tuple[str, str]:
    try:
        return read_reference_field(field_text, answer_format)
    except UnreadableReference as exc:
        raise _Reject("answer", exc.kind, str(exc)) from exc


def derived_id(problem: str) -> str:
    """A stable id for a source without ids: the same problem text always gets the same id.

    >>> derived_id("What is 2 + 3?")
    'p-1ea26256ebae'
    """
    return "p-" + hashlib.sha256(problem.encode("utf-8")).hexdigest()[:12]


def _check_utf8(record: dict, fm: FieldMap) -> None:
    labels = {fm.problem: "problem", fm.answer: "answer", fm.id: "id"}
    for column, value in record.items():
        try:
            json.dumps({column: value}, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise _Reject(labels.get(column, str(column)), "not valid UTF-8") from None


def _text(value: Any, name: str, numbers_ok: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Reject(name, "empty or missing")
    if isinstance(value, str):
        text = value.strip()
    elif numbers_ok and isinstance(value, numbers.Number) and not isinstance(value, bool):
        text = _number_text(value)
    else:
        expected = "text or a number" if numbers_ok else "text"
        raise _Reject(name, "wrong type", f"expected {expected}, got {type(value).__name__}")
    if not text:
        raise _Reject(name, "empty or missing")
    return text


def _check_length(problem: str, max_chars: int) -> None:
    # A problem far beyond any real one is broken input (a whole document in one cell); it would
    # also overflow every prompt it is put in, once per node of its tree.
    if len(problem) > max_chars:
        reason = f"too long: {len(problem)} characters (problems.max_chars is {max_chars})"
        raise _Reject("problem", "too long", reason)


def _number_text(value: numbers.Number) -> str:
    # 5.0 and 5 are the same answer; a float column in parquet or pandas must not turn "5" into "5.0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_unique(problem_id: str, index: int, first_seen: dict[str, int], derived: bool) -> None:
    first = first_seen.setdefault(problem_id, index)
    if first == index:
        return
    if derived:
        raise _Reject("problem", "duplicate problem", f"duplicate problem (same text as row {first})")
    raise _Reject("id", "duplicate id", f"duplicate id (first seen at row {first})")


def _reject_row(row: _Row, rej: _Reject) -> dict:
    raw = row.record
    if not isinstance(raw, str):
        raw = json.dumps(raw, ensure_ascii=False, default=str)
    return {
        "row": row.index,
        "problem_id": rej.problem_id,
        "field": rej.field,
        "reason": str(rej),
        # Undecodable bytes (kept as lone surrogates) show as U+FFFD: parquet strings must be UTF-8.
        "raw": _SURROGATE.sub("\ufffd", raw)[:RAW_CHARS],
    }


# ---- writing --------------------------------------------------------------------------------------


def _write_shards(problems: list[dict], shard_size: int, out_dir: Path) -> int:
    written = set()
    for start in range(0, len(problems), shard_size):
        path = out_dir / f"shard-{start // shard_size:05d}.parquet"
        write_table(problems[start : start + shard_size], PROBLEM_SCHEMA, path)
        written.add(path.name)
    # Shards of an earlier, larger run would otherwise be picked up downstream as if current.
    for stale in out_dir.glob("shard-*.parquet"):
        if stale.name not in written:
            stale.unlink()
    return len(written)
