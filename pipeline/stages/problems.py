"""Problems stage: load a problem set, validate every row, write problem shards and a rejects table.

A bad row never stops the run and is never dropped silently: it becomes a row of rejects.parquet
naming the field at fault and why. Only whole-source problems (a missing file, a column mapping that
does not match the data, no valid row at all) raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.answers import reference_stats
from pipeline.answers.reference import READINGS, UnreadableReference, read_reference_field
from pipeline.config import Config, ConfigError, FieldMap, ProblemsConfig
from pipeline.io.records import (
    WHOLE_ROW,
    Reject,
    Row,
    check_utf8,
    checked_records,
    convert_rows,
    load_records,
    looks_like_file,
    reject_row,
    text_field,
)
from pipeline.io.tables import PROBLEM_SCHEMA, REJECT_SCHEMA, write_json, write_table

log = logging.getLogger(__name__)


@dataclass
class ProblemSet:
    """A source's rows read and validated: the problems, and a rejects row for each bad one."""

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
    outcome = read_problems(pc)
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


def read_problems(pc: ProblemsConfig, where: str = "problems") -> ProblemSet:
    """Every row of the source validated; `where` is the config section named in errors."""
    columns, rows = load_records(pc.source, pc.subset, pc.split, where=f"{where}.source")
    if columns:
        _check_mapping(pc.fields, columns, pc.source, where)
    return _validate(rows, pc)


def _read_summary(outcome: ProblemSet) -> str:
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


# ---- the source -------------------------------------------------------------------------------------


def check_source(pc: ProblemsConfig, where: str = "problems") -> None:
    """Before any job starts (the Snakefile calls this): a local source must exist and have the mapped
    columns. Raises ConfigError with one line. Hugging Face ids are left to the problems job."""
    if not Path(pc.source).expanduser().is_file() and not looks_like_file(pc.source):
        return
    columns, _ = checked_records(pc.source, pc.subset, pc.split, where=f"{where}.source")
    if columns:
        _check_mapping(pc.fields, columns, pc.source, where)


def _check_mapping(fm: FieldMap, columns: list[str], source: str, where: str) -> None:
    for name in ("problem", "answer", "id"):
        column = getattr(fm, name)
        if column is not None and column not in columns:
            hint = "; set it to null to derive ids from the problem text" if name == "id" else ""
            raise ConfigError(
                f"config field {where}.fields.{name}: column {column!r} is not in {source} "
                f"(columns: {', '.join(map(str, columns))}){hint}"
            )


# ---- validation -----------------------------------------------------------------------------------


def _validate(rows: Iterable[Row], pc: ProblemsConfig) -> ProblemSet:
    first_seen: dict[str, int] = {}
    converted = convert_rows(rows, lambda row: _to_problem(row, pc, first_seen), pc.limit)
    outcome = ProblemSet(rows_read=converted.rows_read)
    for problem, read in converted.accepted:
        outcome.problems.append(problem)
        outcome.read_as[read] += 1
    for row, rej in converted.rejected:
        outcome.rejects.append(reject_row(row, rej))
        outcome.by_reason[f"{rej.field}: {rej.kind}"] += 1
        outcome.unread += isinstance(rej.__cause__, UnreadableReference)
    return outcome


def _to_problem(row: Row, pc: ProblemsConfig, first_seen: dict[str, int]) -> tuple[dict, str]:
    """The problem row, and how its reference was read (one of READINGS)."""
    if row.error is not None:
        raise row.error
    record, fm = row.record, pc.fields
    if not isinstance(record, dict):
        raise Reject(WHOLE_ROW, "not an object", f"expected an object, got {type(record).__name__}")
    check_utf8(record, {fm.problem: "problem", fm.answer: "answer", fm.id: "id"})
    problem_id = text_field(record.get(fm.id), "id", numbers_ok=True) if fm.id else None
    try:
        problem = text_field(record.get(fm.problem), "problem", numbers_ok=False)
        _check_length(problem, pc.max_chars)
        field_text = text_field(record.get(fm.answer), "answer", numbers_ok=True)
        problem_id = problem_id or derived_id(problem)
        answer, read = _read_answer(field_text, pc.answer_format)
        # After the reference is read: a row rejected for it must not count as an id's first use.
        _check_unique(problem_id, row.index, first_seen, derived=fm.id is None)
    except Reject as rej:
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
        raise Reject("answer", exc.kind, str(exc)) from exc


def derived_id(problem: str) -> str:
    """A stable id for a source without ids: the same problem text always gets the same id.

    >>> derived_id("What is 2 + 3?")
    'p-1ea26256ebae'
    """
    return "p-" + hashlib.sha256(problem.encode("utf-8")).hexdigest()[:12]


def _check_length(problem: str, max_chars: int) -> None:
    # A problem far beyond any real one is broken input (a whole document in one cell); it would
    # also overflow every prompt it is put in, once per node of its tree.
    if len(problem) > max_chars:
        reason = f"too long: {len(problem)} characters (problems.max_chars is {max_chars})"
        raise Reject("problem", "too long", reason)


def _check_unique(problem_id: str, index: int, first_seen: dict[str, int], derived: bool) -> None:
    first = first_seen.setdefault(problem_id, index)
    if first == index:
        return
    if derived:
        raise Reject("problem", "duplicate problem", f"duplicate problem (same text as row {first})")
    raise Reject("id", "duplicate id", f"duplicate id (first seen at row {first})")


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
