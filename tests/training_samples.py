"""What the training and model-evaluation tests share: small files in the export's sft/ formats (the
columns the trainers read), a tiny benchmark and an eval_model config for it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.formats.paths import assistant, user

PROBLEMS = [
    ("What is 2 + 3?", "5"),
    ("What is 4 + 4?", "8"),
    ("What is 3 * 3?", "9"),
    ("What is 9 - 2?", "7"),
]


def _write(rows: list[dict], path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path)


def sft_files(sft: Path) -> Path:
    """journey, shortcut and preference files as the export writes them (the columns the trainers read);
    the journeys cover the first three problems only, as when polish passes only some."""
    sft.mkdir()
    shortcut = [f"The answer is \\boxed{{{a}}}." for _, a in PROBLEMS]
    journey = [
        f"Let me guess: \\boxed{{{int(a) + 1}}}.\n\nWait, that does not check out. Let me go back.\n\n{s}"
        for s, (_, a) in zip(shortcut, PROBLEMS)
    ]
    for name, texts in (("shortcut", shortcut), ("journey", journey[:3])):
        _write(
            [{"messages": user(q) + assistant(t), "problem_id": q} for (q, _), t in zip(PROBLEMS, texts)],
            sft / f"{name}.parquet",
        )
    pairs = [
        {"prompt": user(q), "chosen": assistant(s), "rejected": assistant(f"It is \\boxed{{{int(a) + 2}}}.")}
        for (q, a), s in zip(PROBLEMS, shortcut)
    ]
    _write(pairs, sft / "preference.parquet")
    # Step pairs as the export writes them: the path so far, then a step that leads on or one that fails.
    first = "Let me add the two numbers."
    steps = [
        {
            "prompt": user(q),
            "chosen": assistant(f"{first}\n\nThey make {a}, so \\boxed{{{a}}}."),
            "rejected": assistant(f"{first}\n\nThey make {int(a) + 2}, so \\boxed{{{int(a) + 2}}}."),
        }
        for q, a in PROBLEMS
    ]
    _write(steps, sft / "step_preference.parquet")
    return sft


BENCHMARK = [
    {"id": "two", "problem": "What is 1 + 1?", "answer": "2"},
    {"id": "four", "problem": "What is 2 + 2?", "answer": "4"},
    {"id": "six", "problem": "What is 3 + 3?", "answer": "6"},
]


def eval_config(tmp: Path, engines: dict | None = None, **eval_model) -> Path:
    """A config evaluating on BENCHMARK (run r under tmp/out), with eval_model's fields over the defaults."""
    source = tmp / "bench.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in BENCHMARK))
    path = tmp / "c.yaml"
    em = {
        "benchmark": {"source": str(source), "fields": {"problem": "problem", "answer": "answer"}},
        **eval_model,
    }
    raw = {
        "run": "r",
        "output_root": str(tmp / "out"),
        "eval_model": em,
        **({"engines": engines} if engines else {}),
    }
    path.write_text(yaml.safe_dump(raw))
    return path
