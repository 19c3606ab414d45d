"""`python -m pipeline train`: two optimizer steps of each stage (SFT shortcut, SFT journey, the shortcut
control, DPO, step-level DPO) on the embedded model, on CPU, from small files in the export's formats."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.formats.paths import user
from pipeline.model_files import EMBEDDED_MODEL, resolve_model
from tests.training_samples import BENCHMARK, PROBLEMS, eval_config, sft_files

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    return sft_files(tmp_path_factory.mktemp("run") / "sft")


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # One thread: where the test machine's cores are shared (vLLM engines of other tests), two OpenMP threads
    # that spin-wait for each other made a step ten times slower (60 s against 5 s).
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def trained(sft_dir, tmp_path_factory) -> Path:
    """Two optimizer steps of every stage, each checkpoint in its own folder."""
    out = tmp_path_factory.mktemp("trained")
    proc = _cli("train", "--sft-dir", str(sft_dir), "--out-dir", str(out), "--max-steps", "2", "--batch-size", "2",
                "--max-length", "256", "--stages", "shortcut", "journey", "shortcut_control", "dpo", "step_dpo")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_steps_of_each_stage_write_checkpoints_with_finite_losses(trained):
    out = trained
    stages = json.loads((out / "train.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["shortcut", "journey", "shortcut_control", "dpo", "step_dpo"]
    # The paper's chain shortcut -> journey -> DPO, then step-level DPO; the control branches off the
    # shortcut checkpoint and sees only the shortcuts of the problems the journeys cover.
    assert stages[0]["from"] == resolve_model(EMBEDDED_MODEL)
    parents = ("shortcut", "shortcut", "journey", "dpo")
    assert [s["from"] for s in stages[1:]] == [str(out / s) for s in parents]
    assert stages[1]["rows"] == stages[2]["rows"] == 3 and stages[0]["rows"] == len(PROBLEMS)
    assert stages[4]["data"].endswith("step_preference.parquet") and stages[4]["rows"] == len(PROBLEMS)
    for s in stages:
        assert s["steps"] == 2 and len(s["losses"]) == 2, s
        assert all(math.isfinite(x) for x in s["losses"]) and s["seconds_per_step"] > 0
        folder = Path(s["checkpoint"])
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
        assert (folder / "tokenizer.json").is_file()
    # SmolLM2's template has no {% generation %} markers: SFT falls back to prompt-completion loss.
    assert [s["loss_mode"] for s in stages] == ["completion"] * 3 + ["dpo", "dpo"]
    print("seconds per step:", {s["stage"]: s["seconds_per_step"] for s in stages})


def test_train_names_a_missing_file(tmp_path):
    proc = _cli(
        "train", "--sft-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--stages", "dpo", timeout=120
    )
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


@pytest.mark.vllm
def test_the_journey_and_control_checkpoints_and_the_base_model_are_evaluated_side_by_side(
    trained, tmp_path, server_url
):
    """The paper's comparison on what was trained here: the base model through the OpenAI-compatible
    server, the journey and shortcut-control checkpoints in in-process vLLM, one after the other."""
    from pipeline.testing.vllm_server import SERVED_MODEL_NAME, served_engine

    config = eval_config(
        tmp_path,
        engines={"served": served_engine(server_url)},
        models=[
            {"name": "base", "engine": "served"},
            *({"name": stage, "model": str(trained / stage)} for stage in ("journey", "shortcut_control")),
        ],
        samples=2,
        max_tokens=48,
    )
    out = tmp_path / "eval"
    proc = _cli("eval-model", "--config", str(config), "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "journey vs shortcut_control:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["models"]) == ["base", "journey", "shortcut_control"]
    paths = {"base": SERVED_MODEL_NAME, **{s: str(trained / s) for s in ("journey", "shortcut_control")}}
    for name, path in paths.items():
        m = summary["models"][name]
        assert m["model_path"] == path and m["problems"] == len(BENCHMARK) and m["samples"] == 2
        assert set(m["pass_at_k"]) == {"1", "2"} and 0 < m["tokens_mean"] <= 48
    # Three problems cannot tell two models apart: the page says so rather than crowning one.
    pairs = [(c["a"], c["b"]) for c in summary["comparisons"]]
    assert pairs == [("base", "journey"), ("base", "shortcut_control"), ("journey", "shortcut_control")]
    assert all(c["within_noise"] for c in summary["comparisons"])
    assert len(list((out / "problems").glob("*.html"))) == len(BENCHMARK)
    stats = json.loads((out / "outputs/journey.stats.json").read_text())
    assert stats["engines"]["model:journey"]["requests"] == 2 * len(BENCHMARK)

    # A rerun pays nothing: every request comes from the cache, and the model is not even loaded.
    proc = _cli("eval-model", "--config", str(config), "--out-dir", str(out), "--model", "journey")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "outputs/journey.stats.json").read_text())["engines"]["model:journey"]
    assert again["requests"] == 0 and again["cache_hits"] == 2 * len(BENCHMARK)
    assert "device" not in again  # the engine never opened
