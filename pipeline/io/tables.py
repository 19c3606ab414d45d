"""Parquet schemas of every stage's output, and atomic reads/writes of tables and stats."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trees.model import NODE_SCHEMA

PROBLEM_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("problem", pa.string()),
        ("answer", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),  # the input row's other fields, as JSON
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),  # 0-based position in the source (line number - 1 for jsonl)
        ("problem_id", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),  # the row as read, cut to 2000 characters
    ]
)

THOUGHT_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("thought_id", pa.string()),
        ("kind", pa.string()),  # journey | shortcut | solution (outcome samples, for preference pairs only)
        ("problem", pa.string()),
        ("reference", pa.string()),
        ("text", pa.string()),
        ("steps", pa.list_(pa.string())),
        ("visits", pa.list_(pa.int64())),
        ("shortcut", pa.list_(pa.int64())),
        ("n_steps", pa.int64()),
        ("n_backtracks", pa.int64()),
        ("answer", pa.string()),
        ("seed", pa.int64()),
        # Appended, so readers that select the older columns by name are unaffected.
        ("method", pa.string()),  # tree | propose-critique | debate | annotation | outcome
        ("n_reflections", pa.int64()),  # reflection paragraphs in the text (tree: one per backtrack)
        ("correct", pa.bool_()),  # the final answer verifies; journey formats take only these
        ("engine_tokens", pa.int64()),  # engine tokens spent building this thought (tree: 0, paid in trees)
    ]
)


@dataclass
class ThoughtRow:
    """One row of THOUGHT_SCHEMA, as every thoughts method builds it; n_steps comes from the steps."""

    problem_id: str
    thought_id: str
    kind: str
    problem: str
    reference: str
    text: str
    steps: list[str]
    answer: str | None
    seed: int
    method: str
    correct: bool
    n_backtracks: int = 0
    n_reflections: int = 0
    engine_tokens: int = 0
    visits: list[int] = field(default_factory=list)  # the walk on the tree; empty without a tree
    shortcut: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, problem: dict, **fields) -> ThoughtRow:
        """A thought of `problem` (a row of PROBLEM_SCHEMA): its id, text and answer carried over."""
        return cls(
            problem_id=problem["problem_id"],
            problem=problem["problem"],
            reference=problem["answer"],
            **fields,
        )

    def as_row(self) -> dict:
        row = {**asdict(self), "n_steps": len(self.steps)}
        return {name: row[name] for name in THOUGHT_SCHEMA.names}


POLISHED_SCHEMA = pa.schema(
    list(THOUGHT_SCHEMA)
    + [
        ("raw_text", pa.string()),  # the derived thought before polishing
        ("polished_text", pa.string()),  # the kept rewrite, else the last attempt's ("" when not polished)
        ("polish_status", pa.string()),  # polished | fallback | passthrough
        ("polish_failed", pa.list_(pa.string())),  # guard checks that failed, for fallbacks
        ("polish_tokens", pa.int64()),  # spent over all attempts
        ("polish_model", pa.string()),
        ("polish_attempts", pa.int64()),  # tries made (0: not polished)
        ("polish_budget", pa.int64()),  # each attempt's max_tokens, from the raw thought's length
        ("polish_attempt_failed", pa.list_(pa.list_(pa.string()))),  # per attempt, its failed checks
    ]
)

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SFT_SCHEMA = pa.schema(
    [
        ("messages", pa.list_(_MESSAGE)),
        ("problem_id", pa.string()),
        ("thought_id", pa.string()),
        ("answer", pa.string()),
        ("n_steps", pa.int64()),
        ("n_backtracks", pa.int64()),
        ("polish_status", pa.string()),
    ]
)

_MESSAGES = pa.list_(_MESSAGE)
PREFERENCE_SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        ("problem_id", pa.string()),
        ("chosen_leaf", pa.int64()),
        ("rejected_leaf", pa.int64()),
        ("chosen_answer", pa.string()),
        ("rejected_answer", pa.string()),
        ("source", pa.string()),  # tree (a tree's leaves, ids above) | outcome (sampled solutions)
    ]
)

STEP_PREFERENCE_SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),  # the problem
        ("chosen", _MESSAGES),  # the path so far, then the step that leads to a verified correct leaf
        ("rejected", _MESSAGES),  # the path so far, then a sibling step whose finished paths all fail
        ("problem_id", pa.string()),
        ("prefix", pa.string()),  # the path so far ("" at the root)
        ("chosen_step", pa.string()),
        ("rejected_step", pa.string()),
        ("parent_id", pa.int64()),
        ("depth", pa.int64()),  # of the two steps
        ("chosen_id", pa.int64()),
        ("rejected_id", pa.int64()),
        ("chosen_value", pa.float64()),  # tree values: the share of verified correct leaves beneath
        ("rejected_value", pa.float64()),
        ("chosen_verdict", pa.string()),  # the pruning scorer's verdicts
        ("rejected_verdict", pa.string()),
    ]
)

STEPWISE_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.bool_())),
        ("problem_id", pa.string()),
        ("leaf_id", pa.int64()),
        ("label_source", pa.string()),  # the scorer(s) whose verdicts became the labels
        ("answer_correct", pa.bool_()),  # the leaf's checked answer (null: not terminal or not checked)
        # Monte-Carlo labels: each step's share of verified correct leaves beneath it (null: none finished)
        ("soft_labels", pa.list_(pa.float64())),
    ]
)

REVISION_SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),  # problem, then each wrong attempt followed by a request to revise
        ("completion", _MESSAGES),  # the correct attempt
        ("problem_id", pa.string()),
        ("correct_leaf", pa.int64()),
        ("wrong_leaves", pa.list_(pa.int64())),  # in the order they appear in the prompt
        ("n_wrong", pa.int64()),
    ]
)

O1_JOURNEY_SCHEMA = pa.schema([("question", pa.string()), ("longCOT", pa.string()), ("answer", pa.string())])

SHAREGPT_SCHEMA = pa.schema(
    [
        ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
        ("problem_id", pa.string()),
    ]
)

__all__ = [
    "NODE_SCHEMA",
    "O1_JOURNEY_SCHEMA",
    "POLISHED_SCHEMA",
    "PREFERENCE_SCHEMA",
    "PROBLEM_SCHEMA",
    "REJECT_SCHEMA",
    "REVISION_SCHEMA",
    "SFT_SCHEMA",
    "SHAREGPT_SCHEMA",
    "STEPWISE_SCHEMA",
    "STEP_PREFERENCE_SCHEMA",
    "THOUGHT_SCHEMA",
    "read_table",
    "stats_path",
    "write_json",
    "write_stats",
    "write_table",
    "write_text",
]


def _replace_atomically(path: Path, write) -> None:
    # Write beside the target, then rename: a killed job never leaves a complete-looking file.
    path.parent.mkdir(parents=True, exist_ok=True)
    # A job killed mid-write leaves its temporary file; only this path's job writes beside it.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(rows: list[dict] | pa.Table, schema: pa.Schema, path: str | Path) -> None:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    _replace_atomically(Path(path), lambda tmp: pq.write_table(table.cast(schema), tmp))


def read_table(path: str | Path, schema: pa.Schema) -> pa.Table:
    table = pq.read_table(path)
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; is it the output of the right stage?")
    return table.select(schema.names).cast(schema)


def stats_path(output: str | Path) -> Path:
    """Each stage's parquet gets a stats sidecar: shard-00000.parquet -> shard-00000.stats.json."""
    output = Path(output)
    return output.with_name(output.name.split(".")[0] + ".stats.json")


def write_text(path: str | Path, text: str) -> None:
    _replace_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_stats(output: str | Path, stats: dict) -> None:
    # Inside a SLURM job, its id: `sacct -j` then finds the log and resources of the job that wrote a
    # shard (a list: stats merged from other jobs' keep theirs, and export's sum lists a stage's jobs).
    job = os.environ.get("SLURM_JOB_ID")
    write_json(
        stats_path(output), {**stats, "slurm_jobs": [*stats.get("slurm_jobs", []), job]} if job else stats
    )
