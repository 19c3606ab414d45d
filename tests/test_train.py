"""`python -m pipeline train`: two optimizer steps of each stage (SFT shortcut, SFT journey, DPO, step-level
DPO) on the embedded model, on CPU, from small files in the export's formats."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.formats.paths import assistant, user
from pipeline.model_files import EMBEDDED_MODEL, resolve_model

pytestmark = pytest.mark.torch

PROBLEMS = [
    ("What is 2 + 3?", "5"),
    ("What is 4 + 4?", "8"),
    ("What is 3 * 3?", "9"),
    ("What is 9 - 2?", "7"),
]


def _write(rows: list[dict], path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    """journey, shortcut and preference files as the export writes them (the columns the trainers read)."""
    sft = tmp_path_factory.mktemp("run") / "sft"
    sft.mkdir()
    shortcut = [f"The answer is \\boxed{{{a}}}." for _, a in PROBLEMS]
    journey = [
        f"Let me guess: \\boxed{{{int(a) + 1}}}.\n\nWait, that does not check out. Let me go back.\n\n{s}"
        for s, (_, a) in zip(shortcut, PROBLEMS)
    ]
    for name, texts in (("shortcut", shortcut), ("journey", journey)):
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


def test_two_steps_of_each_stage_write_checkpoints_with_finite_losses(sft_dir, tmp_path):
    out = tmp_path / "trained"
    # One thread: where the test machine's cores are shared (vLLM engines of other tests), two OpenMP threads
    # that spin-wait for each other made a step ten times slower (60 s against 5 s).
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", "--sft-dir", str(sft_dir), "--out-dir", str(out),
         "--max-steps", "2", "--batch-size", "2", "--max-length", "256",
         "--stages", "shortcut", "journey", "dpo", "step_dpo"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = json.loads((out / "train.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["shortcut", "journey", "dpo", "step_dpo"]
    # Each stage starts from the one before: the paper's shortcut -> journey -> DPO, then step-level DPO.
    assert stages[0]["from"] == resolve_model(EMBEDDED_MODEL)
    assert [s["from"] for s in stages[1:]] == [str(out / s) for s in ("shortcut", "journey", "dpo")]
    assert stages[3]["data"].endswith("step_preference.parquet") and stages[3]["rows"] == len(PROBLEMS)
    for s in stages:
        assert s["steps"] == 2 and len(s["losses"]) == 2, s
        assert all(math.isfinite(x) for x in s["losses"]) and s["seconds_per_step"] > 0
        folder = Path(s["checkpoint"])
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
        assert (folder / "tokenizer.json").is_file()
    # SmolLM2's template has no {% generation %} markers: SFT falls back to prompt-completion loss.
    assert [s["loss_mode"] for s in stages] == ["completion", "completion", "dpo", "dpo"]
    print("seconds per step:", {s["stage"]: s["seconds_per_step"] for s in stages})


def test_train_names_a_missing_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", "--sft-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"),
         "--stages", "dpo"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "has no preference.parquet: run the export first" in proc.stderr and "Traceback" not in proc.stderr


def test_the_loss_covers_only_the_reply_with_or_without_generation_markers(sft_dir):
    from transformers import AutoTokenizer

    from pipeline.train import loss_mode, sft_dataset

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_MODEL))
    assert loss_mode(tokenizer) == "completion"
    rows = sft_dataset(sft_dir / "journey.parquet", "completion")
    assert rows.column_names == ["prompt", "completion"]
    assert rows[0]["prompt"] == user(PROBLEMS[0][0]) and rows[0]["completion"][0]["role"] == "assistant"
    # A template that marks the assistant's reply keeps the conversations as they are.
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
        "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
        "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
        "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endif %}",
    )
    assert "{% generation %}" in tokenizer.chat_template and loss_mode(tokenizer) == "assistant"
    assert sft_dataset(sft_dir / "journey.parquet", "assistant").column_names == ["messages"]
    masks = tokenizer.apply_chat_template(
        rows[0]["prompt"] + rows[0]["completion"], return_dict=True, return_assistant_tokens_mask=True
    )
    reply = [t for t, m in zip(masks["input_ids"], masks["assistant_masks"]) if m]
    assert tokenizer.decode(reply) == rows[0]["completion"][0]["content"] + "<|im_end|>"
