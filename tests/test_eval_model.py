"""Evaluating trained models (python -m pipeline eval-model): the figures, the pages, the models a run
evaluates by default and the compare target (a checkpoint trained for real is evaluated in test_train)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load
from pipeline.engines.base import Completion, EngineStats
from pipeline.io.tables import PROBLEM_SCHEMA, read_table, write_table
from pipeline.model_eval.models import evaluated_models, fingerprint
from pipeline.model_eval.summary import GREEDY, comparisons, model_figures
from pipeline.stages.eval_model import OUTPUT_SCHEMA, outputs_path, run_eval_summary, run_model_outputs
from tests.training_samples import eval_config

ROOT = Path(__file__).resolve().parent.parent


def _row(model: str, pid: str, sample: int, correct: bool, answer: str | None = "1", text: str = "t") -> dict:
    return {
        "model": model, "model_path": f"ck/{model}", "problem_id": pid, "problem": f"problem {pid}",
        "reference": "1", "sample": sample, "text": text, "answer": answer, "correct": correct,
        "checker": "math-verify" if answer else "no answer", "check_reason": "", "tokens": 5,
        "finish_reason": "stop",
    }  # fmt: skip


def test_figures_give_greedy_accuracy_with_its_interval_pass_at_k_and_majority_at_k():
    rows = [_row("m", "a", GREEDY, True), _row("m", "b", GREEDY, False, answer=None)]
    # Problem a: 1 of 4 samples right; b: 3 of 4 right, but its most frequent answer is a wrong one.
    rows += [_row("m", "a", i, i == 0, answer="1" if i == 0 else "7") for i in range(4)]
    rows += [_row("m", "b", i, i < 3, answer=["1", "1", "1", "9"][i]) for i in range(4)]
    fig = model_figures(rows)
    assert fig["greedy"]["accuracy"] == 0.5 and fig["greedy"]["no_answer"] == 1
    low, high = fig["greedy"]["ci95"]
    assert low < 0.5 < high and high - low > 0.5  # two problems say little, and the interval shows it
    assert fig["samples"] == 4
    assert fig["pass_at_k"] == {"1": 0.5, "2": 0.75, "4": 1.0}
    # maj@4: a's majority answer is 7 (wrong), b's is 1 (right). maj@2: a's tie of 1 and 7 goes to the
    # answer given first (1, right); maj@1 is each problem's first sample.
    assert fig["maj_at_k"] == {"1": 1.0, "2": 1.0, "4": 0.5}


def test_a_difference_of_a_few_problems_is_within_noise_and_a_large_one_is_not():
    def greedy(model: str, right: list[bool]) -> list[dict]:
        return [_row(model, str(i), GREEDY, ok) for i, ok in enumerate(right)]

    close = comparisons(
        {"a": greedy("a", [True, True, False, False]), "b": greedy("b", [True, False, False, False])}
    )
    assert close[0]["difference"] == 0.25 and close[0]["only_a"] == 1 and close[0]["within_noise"]
    far = comparisons({"a": greedy("a", [True] * 20), "b": greedy("b", [False] * 20)})
    assert far[0]["difference"] == 1.0 and not far[0]["within_noise"] and far[0]["mcnemar_p"] < 1e-5


def test_by_default_the_base_model_and_every_trained_stage_are_evaluated(tmp_path):
    cfg = load(eval_config(tmp_path))
    models = evaluated_models(cfg)
    assert [m.name for m in models] == ["base", *cfg.train.stages]
    assert models[0].engine.model == cfg.engines["local"].model and models[0].trained_stage is None
    assert [m.engine.model for m in models[1:]] == [
        str(tmp_path / "out/r/train" / s) for s in cfg.train.stages
    ]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([{"name": "a", "engine": "nowhere"}], "eval_model.models.0.engine: no engine named 'nowhere'"),
        ([{"name": "a"}, {"name": "a", "model": "x"}], "eval_model.models.1.name: 'a' is already evaluated"),
        ([{"name": "a b"}], "eval_model.models.0.name"),
    ],
)
def test_a_bad_model_entry_is_refused_naming_the_field(tmp_path, models, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load(eval_config(tmp_path, models=models))


def test_a_checkpoint_retrained_in_place_is_not_answered_from_the_old_ones_cache(tmp_path):
    folder = tmp_path / "journey"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    before = fingerprint(str(folder))
    assert fingerprint(str(folder)) == before  # the same files: the same key, so a rerun is free
    (folder / "model.safetensors").write_bytes(b"new weights, retrained")
    assert fingerprint(str(folder)) != before
    assert fingerprint("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"


class _Scripted:
    """Answers by problem: the greedy answer as scripted, each sample alternately right and wrong."""

    label = "scripted"

    def __init__(self, greedy: dict[str, str]):
        self.greedy, self.stats = greedy, EngineStats()

    def generate(self, requests):
        self.stats.requests += len(requests)
        out = []
        for r in requests:
            problem = r.messages[-1][1].split("\n")[0]
            text = self.greedy[problem]
            out.append([Completion(text if r.n == 1 else f"\\boxed{{{i}}}", 4, "stop") for i in range(r.n)])
        return out

    def close(self):
        pass


def test_every_output_is_checked_and_the_pages_show_the_models_side_by_side(tmp_path):
    cfg = load(
        eval_config(tmp_path, models=[{"name": "base"}, {"name": "tuned", "model": "ck"}], samples=2),
        overrides={"output_root": str(tmp_path / "out")},
    )
    # The run's own training problems include one benchmark problem: the summary says so.
    write_table(
        [{"problem_id": "x", "problem": "what is 2 + 2?", "answer": "4", "source": "s", "meta": "{}"}],
        PROBLEM_SCHEMA,
        cfg.run_dir / "problems/shard-00000.parquet",
    )
    scripts = {
        # An empty box (the instruction copied) is no answer; an unboxed last sentence is read (unboxed: true).
        "base": {
            "What is 1 + 1?": "So \\boxed{2}.",
            "What is 2 + 2?": "I write it in \\boxed{}.",
            "What is 3 + 3?": "3 and 3 make 7. So the answer is 7.",
        },
        "tuned": {
            "What is 1 + 1?": "Wait, let me go back. \\boxed{2}",
            "What is 2 + 2?": "<script>alert(1)</script> \\boxed{4}",
            "What is 3 + 3?": "\\boxed{6}",
        },
    }
    out = tmp_path / "eval"
    for name in scripts:
        stats = run_model_outputs(cfg, name, out, opener=lambda s, n=name: _Scripted(scripts[n]))
        assert stats["outputs"] == 3 * (1 + 2)
    rows = read_table(outputs_path(out, "base"), OUTPUT_SCHEMA).to_pylist()
    greedy = {r["problem_id"]: r for r in rows if r["sample"] == GREEDY}
    assert greedy["two"]["correct"] and greedy["two"]["checker"] == "math-verify"
    assert greedy["four"]["answer"] is None and greedy["four"]["checker"] == "no answer"
    assert not greedy["six"]["correct"] and greedy["six"]["answer"] == "7"
    assert sorted(r["sample"] for r in rows if r["problem_id"] == "two") == [GREEDY, 0, 1]

    summary = run_eval_summary(cfg, out)
    assert summary["models"]["base"]["greedy"]["correct"] == 1
    assert summary["models"]["tuned"]["greedy"]["correct"] == 3
    assert summary["models"]["tuned"]["per_answer"]["backtracks"] == round(1 / 3, 3)
    (pair,) = summary["comparisons"]
    assert (pair["a"], pair["b"], pair["only_b"], pair["within_noise"]) == ("base", "tuned", 2, True)
    assert summary["overlap_with_training"] == {"count": 1, "ids": ["four"]}
    index = (out / "index.html").read_text()
    assert "within noise" in index and "also training problems" in index
    pages = sorted((out / "problems").glob("*.html"))
    assert len(pages) == 3
    four = next(p.read_text() for p in pages if p.name.startswith("four"))
    assert "<script>alert" not in four and "&lt;script&gt;alert(1)&lt;/script&gt;" in four
    assert four.index("<h3>base</h3>") < four.index("<h3>tuned</h3>")


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # One thread per torch op: training beside other tests' engines on 2 cores spins otherwise (test_train).
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_a_summary_without_a_models_outputs_names_the_model(tmp_path):
    proc = _cli(
        "eval-model", "--config", str(eval_config(tmp_path)), "--out-dir", str(tmp_path / "e"), "--summarize"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no outputs of base, shortcut, journey, shortcut_control" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluating_a_stage_that_was_not_trained_says_to_train_it(tmp_path):
    proc = _cli(
        "eval-model",
        "--config",
        str(eval_config(tmp_path)),
        "--out-dir",
        str(tmp_path / "e"),
        "--model",
        "journey",
    )
    assert proc.returncode == 2
    assert "model journey: no checkpoint at" in proc.stderr and "train stage journey first" in proc.stderr


@pytest.mark.snakemake
def test_the_compare_target_trains_the_stages_then_evaluates_each_model_and_the_base(tmp_path):
    from tests.snakemake_run import snakemake

    config = eval_config(tmp_path)
    proc = snakemake("--configfile", str(config), "--dry-run", "--printshellcmds", "compare")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = dict(
        line.split()
        for line in proc.stdout.splitlines()
        if line.split()[:1] in (["train"], ["eval_model_outputs"], ["eval_model"], ["compare"])
        and len(line.split()) == 2
    )
    assert jobs == {"train": "1", "eval_model_outputs": "4", "eval_model": "1", "compare": "1"}
    run = tmp_path / "out" / "r"
    assert f"train --config {run}/config.train.yaml --sft-dir {run}/sft --out-dir {run}/train" in proc.stdout
    for model in ("base", "shortcut", "journey", "shortcut_control"):
        assert f"--out-dir {run}/eval_model --model {model} >" in proc.stdout
    assert f"--out-dir {run}/eval_model --summarize >" in proc.stdout
