"""Source records from a local file (jsonl, json, csv, parquet) or a Hugging Face dataset, each
row kept with its index, and one reject type for every stage that turns rows away.

A row that cannot be parsed becomes a Row carrying its Reject, so the stage reporting rejects names
it; only a source that cannot be read at all raises.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config import ConfigError

RAW_CHARS = 2000  # how much of a rejected row's raw text its reject keeps
WHOLE_ROW = "row"  # the reject's field when the row as a whole is unreadable
_SURROGATE = re.compile("[\ud800-\udfff]")


class Reject(Exception):
    """Why one row cannot be used; `field` names the column at fault, `kind` is the countable part
    of the reason (the reason itself when none is given)."""

    def __init__(self, field: str, kind: str, reason: str | None = None):
        super().__init__(reason or kind)
        self.field = field
        self.kind = kind
        self.problem_id: str | None = None


@dataclass
class Row:
    """One input row; `record` is the raw text instead of a mapping when the row could not be parsed."""

    index: int
    record: Any
    error: Reject | None = None


@dataclass
class Converted:
    """Rows through a converter: what it accepted, what it refused (with the reason), rows read."""

    accepted: list
    rejected: list[tuple[Row, Reject]]
    rows_read: int


def convert_rows(rows: Iterable[Row], convert: Callable[[Row], Any], limit: int | None = None) -> Converted:
    """Each row through `convert` (which raises Reject to refuse one) until `limit` are accepted."""
    out = Converted([], [], 0)
    for row in rows:
        if limit is not None and len(out.accepted) >= limit:
            break
        out.rows_read += 1
        try:
            out.accepted.append(convert(row))
        except Reject as rej:
            out.rejected.append((row, rej))
    return out


def load_records(
    source: str, subset: str | None = None, split: str = "train", where: str = "problems.source"
) -> tuple[list[str], Iterable[Row]]:
    """(column names, rows) of a local file or a Hub dataset; `where` names the config field that
    named the source in the errors about the source itself."""
    path = Path(source).expanduser()
    if path.is_file():
        loader = _LOADERS.get(path.suffix.lower())
        if loader is None:
            raise ValueError(
                f"{where} {source!r}: unsupported file type {path.suffix!r} "
                f"(expected {', '.join(_LOADERS)} or a Hugging Face dataset)"
            )
        return loader(path)
    if path.is_dir() or not looks_like_file(source):
        return _load_hf(source, subset, split)
    raise FileNotFoundError(f"{where} {source!r}: no such file ({path.resolve()})")


def checked_records(
    source: str, subset: str | None = None, split: str = "train", where: str = "problems.source"
) -> tuple[list[str], Iterable[Row]]:
    """load_records for a config check: a source that cannot be read is the ConfigError naming `where`."""
    try:
        return load_records(source, subset, split, where)
    except (OSError, ValueError) as exc:
        message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        raise ConfigError(f"config field {message}") from None


def looks_like_file(source: str) -> bool:
    """Whether a source that is not on disk was meant as a file rather than a Hub id.

    Hub ids ("owner/name") look like relative paths, so only a known suffix or an explicit path
    prefix makes a missing source a missing file.

    >>> looks_like_file("data/problems.jsonl"), looks_like_file("openai/gsm8k")
    (True, False)
    """
    return Path(source).suffix.lower() in _LOADERS or source.startswith(("/", "./", "../", "~"))


def reject_row(row: Row, rej: Reject) -> dict:
    """The reject table's row for `row`: its index, the problem it was for (when known), the field at
    fault, the reason and the raw row."""
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


def check_utf8(record: dict, labels: dict | None = None) -> None:
    """Reject a record holding undecodable bytes, naming the column (or its label in `labels`)."""
    labels = labels or {}
    for column, value in record.items():
        try:
            json.dumps({column: value}, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise Reject(labels.get(column, str(column)), "not valid UTF-8") from None


def text_field(value: Any, name: str, numbers_ok: bool) -> str:
    """A field's text, stripped; a number becomes its text only when `numbers_ok`.

    >>> text_field(5.0, "answer", numbers_ok=True), text_field(" 7 ", "id", numbers_ok=False)
    ('5', '7')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise Reject(name, "empty or missing")
    if isinstance(value, str):
        text = value.strip()
    elif numbers_ok and isinstance(value, numbers.Number) and not isinstance(value, bool):
        text = _number_text(value)
    else:
        expected = "text or a number" if numbers_ok else "text"
        raise Reject(name, "wrong type", f"expected {expected}, got {type(value).__name__}")
    if not text:
        raise Reject(name, "empty or missing")
    return text


def _number_text(value: numbers.Number) -> str:
    # 5.0 and 5 are the same answer; a float column in parquet or pandas must not turn "5" into "5.0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes as markers, so the row holding them is rejected by
    # name (see check_utf8) instead of failing the whole file or being silently altered.
    return path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _load_jsonl(path: Path) -> tuple[list[str], list[Row]]:
    rows = []
    for index, line in enumerate(_read_text(path).split("\n")):
        if line.strip():
            rows.append(_parse_line(index, line.strip()))
    return _columns(r.record for r in rows if r.error is None), rows


def _parse_line(index: int, line: str) -> Row:
    try:
        return Row(index, json.loads(line))
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON on line {index + 1}: {exc.msg} at column {exc.colno}"
        return Row(index, line, Reject(WHOLE_ROW, "invalid JSON", reason))


def _load_json(path: Path) -> tuple[list[str], list[Row]]:
    text = _read_text(path)
    try:
        # An empty file is an empty list, so it fails like an empty jsonl or csv: "holds no rows".
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    records = _json_records(path, data)
    return _columns(records), [Row(i, r) for i, r in enumerate(records)]


def _json_records(path: Path, data: Any) -> list:
    if isinstance(data, list):
        return data
    lists = [v for v in data.values() if isinstance(v, list)] if isinstance(data, dict) else []
    if len(lists) != 1:
        raise ValueError(
            f'{path}: expected a list of objects, or an object holding one list like {{"data": [...]}}'
        )
    return lists[0]


def _load_csv(path: Path) -> tuple[list[str], list[Row]]:
    # The csv module rather than pandas: every cell stays the exact string written ("NA", "007"),
    # and a row with the wrong number of cells becomes one reject instead of a failed file.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = next(reader, [])
    rows = []
    for index, cells in enumerate(r for r in reader if r):
        if len(cells) == len(header):
            rows.append(Row(index, dict(zip(header, cells))))
        else:
            reason = f"expected {len(header)} cells like the header, got {len(cells)}"
            rows.append(Row(index, cells, Reject(WHOLE_ROW, "wrong number of cells", reason)))
    return header, rows


def _load_parquet(path: Path) -> tuple[list[str], list[Row]]:
    table = pq.read_table(path)
    return table.column_names, [Row(i, r) for i, r in enumerate(table.to_pylist())]


def _load_hf(source: str, subset: str | None, split: str) -> tuple[list[str], Iterator[Row]]:
    # Imported here: `datasets` is slow to import and only hub ids and dataset folders need it.
    import datasets

    ds = datasets.load_dataset(source, subset, split=split)
    return list(ds.column_names), (Row(i, r) for i, r in enumerate(ds))


_LOADERS = {".jsonl": _load_jsonl, ".json": _load_json, ".parquet": _load_parquet, ".csv": _load_csv}


def _columns(records: Iterable[Any]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            names.update(dict.fromkeys(record))
    return list(names)
