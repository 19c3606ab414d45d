"""Step-labelled solutions from the layouts people have, each row a solution or a reject naming the field.

- processbench: `problem`, `steps` (list), `label` = index of the first wrong step or -1. Steps after
  the first wrong one are unlabelled (ProcessBench annotators stop there).
- prm800k: OpenAI's native jsonl. The solution follows each step's chosen completion (or the human
  one); rating -1 is wrong, 0 and +1 are not. A step with neither chosen nor human completion ends the
  solution: with its first -1 completion when it has one (the error the labeler found), else before it.
- math-shepherd: one `input` text whose steps each end with the step tag ("ки"), the problem before
  "Step 1:", and a `label` text that is the same with each tag replaced by "+" or "-".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, EvalConfig
from pipeline.io.records import Reject, check_utf8, checked_records, convert_rows, reject_row

LAYOUT_FIELDS: dict[str, dict[str, str | None]] = {
    "processbench": {
        "id": "id",
        "problem": "problem",
        "steps": "steps",
        "label": "label",
        "answer": "answer",
    },
    "prm800k": {
        "id": None,
        "problem": "question.problem",
        "steps": "label.steps",
        "label": "label.finish_reason",
        "answer": "question.ground_truth_answer",
    },
    "math-shepherd": {"id": None, "problem": None, "steps": "input", "label": "label", "answer": None},
}
OPTIONAL = ("id", "answer")  # mapped columns a row may lack; the others must be there
_STEP_1 = re.compile(r"step 1:", re.IGNORECASE)


@dataclass
class Solution:
    solution_id: str
    row: int
    problem: str
    reference: str  # the reference answer, "" when the data has none (Monte-Carlo rollouts need it)
    steps: list[str]
    labels: list[bool | None]  # per step: True correct, False wrong, None unlabelled
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def first_error(self) -> int:
        """Index of the first step labelled wrong, -1 when none is."""
        return next((i for i, ok in enumerate(self.labels) if ok is False), -1)


@dataclass
class Loaded:
    solutions: list[Solution]
    rejects: list[dict]  # row, solution_id, field, reason, raw
    rows_read: int


def field_map(ec: EvalConfig) -> dict[str, str | None]:
    return {**LAYOUT_FIELDS[ec.layout], **ec.fields}


def lookup(record: dict, path: str) -> Any:
    """A dotted path into nested objects; KeyError when a part is missing.

    >>> lookup({"question": {"problem": "What is 2 + 3?"}}, "question.problem")
    'What is 2 + 3?'
    """
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def _get(record: dict, path: str) -> Any:
    try:
        return lookup(record, path)
    except KeyError:
        raise Reject(path, "missing") from None


def _text(value: Any, where: str, empty_ok: bool = False) -> str:
    if isinstance(value, str) and (value.strip() or empty_ok):
        return value.strip()
    if value is None or (isinstance(value, float) and math.isnan(value)) or isinstance(value, str):
        raise Reject(where, "empty or missing")
    raise Reject(where, f"expected text, got {type(value).__name__}")


def _index(value: Any, where: str) -> int:
    """An integer from JSON, parquet (a float column when nulls are present) or csv text."""
    if isinstance(value, bool):
        raise Reject(where, "expected an integer, got bool")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if isinstance(value, int):
        return value
    raise Reject(where, f"expected an integer, got {value!r}"[:200])


def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # csv cells hold lists as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise Reject(where, "expected a list of steps, got text that is not a JSON list") from None
    if not isinstance(value, list) or not value:
        raise Reject(where, "expected a non-empty list of steps")
    return [_text(step, f"{where}[{i}]") for i, step in enumerate(value)]


# ---- layouts: (record, field map) -> (problem, steps, labels) ---------------------------------------


def _processbench(record: dict, fm: dict) -> tuple[str, list[str], list[bool | None]]:
    problem = _text(_get(record, fm["problem"]), fm["problem"])
    steps = _string_list(_get(record, fm["steps"]), fm["steps"])
    label = _index(_get(record, fm["label"]), fm["label"])
    if not -1 <= label < len(steps):
        raise Reject(fm["label"], f"{label} is not -1 or a step index (0 to {len(steps) - 1})")
    if label == -1:
        return problem, steps, [True] * len(steps)
    return problem, steps, [True] * label + [False] + [None] * (len(steps) - label - 1)


def _prm800k(record: dict, fm: dict) -> tuple[str, list[str], list[bool | None]]:
    problem = _text(_get(record, fm["problem"]), fm["problem"])
    raw_steps = _get(record, fm["steps"])
    if not isinstance(raw_steps, list):
        raise Reject(fm["steps"], f"expected a list, got {type(raw_steps).__name__}")
    steps: list[str] = []
    labels: list[bool | None] = []
    for i, step in enumerate(raw_steps):
        where = f"{fm['steps']}[{i}]"
        if not isinstance(step, dict):
            raise Reject(where, f"expected an object, got {type(step).__name__}")
        taken = _prm800k_step(step, where)
        if taken is None:
            break
        text, ok = taken
        steps.append(text)
        labels.append(ok)
        if not ok and step.get("chosen_completion") is None:
            break
    if not steps:
        raise Reject(fm["steps"], "no labelled step")
    finish = lookup_or_none(record, fm["label"])
    if False not in labels and finish != "solution":
        raise Reject(
            fm["label"],
            f"{finish!r} and no step rated -1: the labels do not say whether the solution is right",
        )
    return problem, steps, labels


def lookup_or_none(record: dict, path: str) -> Any:
    try:
        return lookup(record, path)
    except KeyError:
        return None


def _prm800k_step(step: dict, where: str) -> tuple[str, bool] | None:
    """The step the solution takes here and whether it is right (rating -1 is wrong), or None when
    the solution ends before it."""
    completions = step.get("completions") or []
    if not isinstance(completions, list):
        raise Reject(f"{where}.completions", "expected a list")
    for j, c in enumerate(completions):
        if not isinstance(c, dict) or c.get("rating") not in (-1, 0, 1):
            rating = c.get("rating") if isinstance(c, dict) else c
            raise Reject(f"{where}.completions[{j}].rating", f"expected -1, 0 or 1, got {rating!r}"[:200])
    chosen = step.get("chosen_completion")
    if chosen is not None:
        j = _index(chosen, f"{where}.chosen_completion")
        if not 0 <= j < len(completions):
            raise Reject(
                f"{where}.chosen_completion", f"{j} is not an index of its {len(completions)} completions"
            )
        c = completions[j]
        return _text(c.get("text"), f"{where}.completions[{j}].text"), c["rating"] != -1
    human = step.get("human_completion")
    if human is not None:
        # Phase 1 labelers wrote their own step when every completion was wrong: a +1 step.
        text = human.get("text") if isinstance(human, dict) else human
        return _text(text, f"{where}.human_completion"), True
    wrong = next((j for j, c in enumerate(completions) if c["rating"] == -1), None)
    if wrong is None:
        return None
    return _text(completions[wrong].get("text"), f"{where}.completions[{wrong}].text"), False


def _math_shepherd(record: dict, fm: dict, tag: str) -> tuple[str, list[str], list[bool | None]]:
    text = _text(_get(record, fm["steps"]), fm["steps"])
    labelled = _text(_get(record, fm["label"]), fm["label"])
    parts = text.split(tag)
    if len(parts) < 2:
        raise Reject(fm["steps"], f"no step tag {tag!r}")
    if parts[-1].strip():
        raise Reject(fm["steps"], f"text after the last step tag {tag!r}: it has no label")
    marks = _tag_marks(parts, labelled)
    if marks is None:
        raise Reject(fm["label"], f"is not the {fm['steps']} text with each {tag!r} replaced by + or -")
    start = _STEP_1.search(parts[0])
    if start is None:
        raise Reject(
            fm["steps"], "no 'Step 1:' before the first step tag, so the problem cannot be told apart"
        )
    problem = _text(parts[0][: start.start()], fm["steps"])
    steps = [parts[0][start.start() :].strip(), *(p.strip() for p in parts[1:-1])]
    for i, step in enumerate(steps):
        if not step:
            raise Reject(fm["steps"], f"step {i + 1} is empty")
    return problem, steps, [m == "+" for m in marks]


def _tag_marks(parts: list[str], labelled: str) -> list[str] | None:
    """The +/- in place of each tag, when `labelled` is the text with every tag so replaced.

    >>> _tag_marks(["Q? Step 1: a ", "\\nStep 2: b ", ""], "Q? Step 1: a +\\nStep 2: b -")
    ['+', '-']
    >>> _tag_marks(["Q? Step 1: a ", ""], "Q? Step 1: a ?") is None
    True
    """
    marks, pos = [], 0
    for part in parts[:-1]:
        pos += len(part)
        if not labelled.startswith(part, pos - len(part)) or labelled[pos : pos + 1] not in ("+", "-"):
            return None
        marks.append(labelled[pos])
        pos += 1
    return marks if labelled[pos:] == parts[-1] else None


# ---- reading ----------------------------------------------------------------------------------------


def read_solutions(ec: EvalConfig) -> Loaded:
    """Every row of the source as a Solution or a reject; raises ConfigError naming the eval field
    when the source cannot be read or a mapped column is in no row."""
    columns, rows = checked_records(ec.source, ec.subset, ec.split, where="eval.source")
    fm = field_map(ec)
    if columns:
        _check_columns(ec, fm, columns)
    layout = _layout(ec)
    seen: dict[str, int] = {}
    converted = convert_rows(rows, lambda row: _solution(row, fm, layout, ec.group_by, seen), ec.limit)
    rejects = [reject_row(row, rej) for row, rej in converted.rejected]
    return Loaded(converted.accepted, rejects, converted.rows_read)


def _layout(ec: EvalConfig) -> Callable[[dict, dict], tuple[str, list[str], list[bool | None]]]:
    if ec.layout == "math-shepherd":
        return lambda record, fm: _math_shepherd(record, fm, ec.step_tag)
    return {"processbench": _processbench, "prm800k": _prm800k}[ec.layout]


def _check_columns(ec: EvalConfig, fm: dict, columns: Iterable[str]) -> None:
    """Top-level columns only: a dotted path's first part must be one."""
    columns = list(columns)
    for role, path in fm.items():
        if path is not None and role not in OPTIONAL and path.split(".")[0] not in columns:
            raise ConfigError(
                f"config field eval.fields.{role}: column {path.split('.')[0]!r} is not in {ec.source} "
                f"(columns: {', '.join(map(str, columns))})"
            )
    for name in ec.group_by:
        if name.split(".")[0] not in columns:
            raise ConfigError(
                f"config field eval.group_by: column {name!r} is not in {ec.source} "
                f"(columns: {', '.join(map(str, columns))})"
            )


def _solution(row, fm: dict, layout, group_by: list[str], seen: dict[str, int]) -> Solution:
    if row.error is not None:
        raise Reject(row.error.field, str(row.error))
    record = row.record
    if not isinstance(record, dict):
        raise Reject("row", f"expected an object, got {type(record).__name__}")
    check_utf8(record)
    problem, steps, labels = layout(record, fm)
    solution_id = _solution_id(record, fm, problem, steps)
    first = seen.setdefault(solution_id, row.index)
    if first != row.index:
        where = fm["id"] or fm["steps"]
        raise Reject(where, f"duplicate solution {solution_id!r} (first seen at row {first})")
    answer = lookup_or_none(record, fm["answer"]) if fm["answer"] else None
    reference = "" if answer is None else str(answer).strip()
    groups = {name: _group_value(lookup_or_none(record, name)) for name in group_by}
    return Solution(solution_id, row.index, problem, reference, steps, labels, groups)


def _solution_id(record: dict, fm: dict, problem: str, steps: list[str]) -> str:
    if fm["id"]:
        value = lookup_or_none(record, fm["id"])
        if value is not None and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    # Stable without an id column: the same solution text always gets the same id.
    digest = hashlib.sha256(json.dumps([problem, steps], ensure_ascii=False).encode("utf-8")).hexdigest()
    return "s-" + digest[:12]


def _group_value(value: Any) -> str:
    return "(none)" if value is None or value == "" else str(value)
