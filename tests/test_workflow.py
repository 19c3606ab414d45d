"""End to end: the real snakemake runs the real Snakefile with the real engine on a tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.io.tables import NODE_SCHEMA, POLISHED_SCHEMA, PROBLEM_SCHEMA, SFT_SCHEMA, THOUGHT_SCHEMA
from pipeline.testing.vllm_server import SERVED_MODEL_NAME, served_engine
from tests.conftest import EASY_PROBLEMS
from tests.snakemake_run import ROOT, assert_no_secret, shard_rows, snakemake, write_config

pytestmark = [pytest.mark.snakemake, pytest.mark.vllm]


# Example prices (USD per million tokens) on the embedded model, so the run's costs can be checked.
PRICES = {"input": 0.15, "output": 0.6}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    # One shard, as the Quick start's run: the sharded runs (resume, concurrency, SLURM) cover several.
    config = write_config(
        tmp,
        "e2e",
        EASY_PROBLEMS,
        problems={"shard_size": len(EASY_PROBLEMS)},
        engines={"local": {"prices": PRICES}},
    )
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    (tmp / "snakemake.log").write_text(proc.stdout + proc.stderr)
    return tmp / "outputs" / "e2e", config


def _read(path: Path, schema) -> list[dict]:
    table = pq.read_table(path)
    assert table.schema.names == schema.names, path
    return table.to_pylist()


def test_every_stage_leaves_one_parquet_per_shard(run):
    out, _ = run
    shards = sorted(p.name for p in (out / "problems").glob("shard-*.parquet"))
    assert shards == ["shard-00000.parquet"]
    for stage in ("trees", "thoughts", "polished"):
        assert sorted(p.name for p in (out / stage).glob("shard-*.parquet")) == shards
    problems = [r for s in shards for r in _read(out / "problems" / s, PROBLEM_SCHEMA)]
    assert [p["problem_id"] for p in problems] == [p["problem_id"] for p in EASY_PROBLEMS]
    for s in shards:
        ids = {r["problem_id"] for r in _read(out / "problems" / s, PROBLEM_SCHEMA)}
        nodes = _read(out / "trees" / s, NODE_SCHEMA)
        assert {n["problem_id"] for n in nodes} == ids
        assert sum(n["parent_id"] == -1 for n in nodes) == len(ids)
        thoughts = _read(out / "thoughts" / s, THOUGHT_SCHEMA)
        polished = _read(out / "polished" / s, POLISHED_SCHEMA)
        assert [t["thought_id"] for t in thoughts] == [p["thought_id"] for p in polished]


def test_stats_add_up(run):
    out, _ = run
    stats = json.loads((out / "stats.json").read_text())
    assert stats["problems_in"] == stats["problems_valid"] == stats["trees_built"] == len(EASY_PROBLEMS)
    assert stats["nodes_generated"] == stats["nodes_kept"] + stats["nodes_pruned"] > 0
    assert stats["problems_with_journey"] + stats["trees_without_correct_leaf"] == stats["trees_built"]
    assert stats["journeys"] == stats["shortcuts"] == stats["problems_with_journey"]
    assert stats["tokens"]["policy"] > 0 and stats["tokens"]["scorer"] > 0
    assert set(stats["wall_s"]) == {"problems", "trees", "thoughts", "polish", "export"}
    if stats["journeys"]:
        assert stats["tokens"]["polish"] > 0 and stats["polish_guard_pass_rate"] is not None


def test_the_cost_is_every_stages_tokens_at_the_engines_prices(run):
    out, _ = run
    stats = json.loads((out / "stats.json").read_text())
    costs = stats["costs"]
    assert costs["prices"] == {"local": PRICES} and costs["unpriced_engines"] == []
    # Every job's tokens, read from the shard sidecars, priced by hand.
    sidecars = [
        json.loads(p.read_text())
        for stage in ("trees", "thoughts", "polished")
        for p in (out / stage).glob("shard-*.stats.json")
    ]
    tokens_in = sum(
        s["engines"]["local"]["prompt_tokens"] for s in sidecars if "local" in s.get("engines", {})
    )
    tokens_out = sum(
        s["engines"]["local"]["completion_tokens"] for s in sidecars if "local" in s.get("engines", {})
    )
    assert tokens_in > 0 and tokens_out > 0
    assert (costs["total"]["input_tokens"], costs["total"]["output_tokens"]) == (tokens_in, tokens_out)
    usd = (tokens_in * PRICES["input"] + tokens_out * PRICES["output"]) / 1e6
    assert costs["total"]["usd"] == pytest.approx(usd, abs=1e-5)
    # A stage without engine calls (the tree walk) has no cost, not a zero one.
    assert costs["by_stage"]["thoughts"]["total"]["usd"] is None
    staged = [s["total"]["usd"] for s in costs["by_stage"].values() if s["total"]["usd"] is not None]
    assert sum(staged) == pytest.approx(usd, abs=1e-5)
    if stats["journeys"]:
        assert costs["per_journey_usd"] == pytest.approx(usd / stats["journeys"], abs=1e-5)
    card = (out / "sft" / "README.md").read_text()
    assert "## Cost" in card and f"Total {costs['total']['usd']} USD" in card
    index = (out / "report" / "index.html").read_text()
    assert f'<p id="cost">{costs["total"]["usd"]} USD in all' in index


def test_stats_and_card_say_what_the_engine_ran_on(run):
    from pipeline.engines.vllm_engine import cpu_facts, resolve_dtype

    out, _ = run
    runtime = json.loads((out / "stats.json").read_text())["runtime"]
    # The dtype `auto` resolved to on this machine (float32 where the CPU lacks bfloat16 instructions),
    # the same in every job that loaded the engine.
    # On a CPU the engine core runs in the job's process (engine_process: null).
    assert runtime == {
        "local": {"device": "cpu", "dtype": resolve_dtype("auto"), **cpu_facts(), "engine_process": False}
    }
    card = (out / "sft" / "README.md").read_text()
    assert f"| local | cpu | {resolve_dtype('auto')} | {cpu_facts()['cpu']} |" in card


def test_sft_files_are_trl_conversational_and_hold_a_backtracking_journey(run):
    out, _ = run
    journeys = _read(out / "sft" / "journey.parquet", SFT_SCHEMA)
    shortcuts = _read(out / "sft" / "shortcut.parquet", SFT_SCHEMA)
    assert journeys and len(journeys) == len(shortcuts)
    problems = {p["problem_id"]: p["problem"] for p in EASY_PROBLEMS}
    for row in journeys + shortcuts:
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": problems[row["problem_id"]]}
        assert assistant["role"] == "assistant" and "\\boxed{" in assistant["content"]
    assert any(j["n_backtracks"] > 0 for j in journeys)
    assert all(s["n_backtracks"] == 0 for s in shortcuts)


def test_a_finished_run_is_not_recomputed(run):
    _, config = run
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_stage_by_hand_on_one_shard_gives_the_workflows_output(run, tmp_path):
    out, _ = run
    shard = "shard-00000.parquet"
    dest = tmp_path / shard
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "thoughts",
            "--config",
            str(out / "config.yaml"),
            "--trees",
            str(out / "trees" / shard),
            "--problems",
            str(out / "problems" / shard),
            "--out",
            str(dest),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert pq.read_table(dest).equals(pq.read_table(out / "thoughts" / shard))


def test_rerunning_a_stage_replays_its_cache_without_loading_the_model(run, tmp_path):
    out, _ = run
    shard = "shard-00000"
    shutil.copy(out / "trees" / f"{shard}.cache.sqlite", tmp_path / f"{shard}.cache.sqlite")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "trees",
            "--config",
            str(out / "config.yaml"),
            "--problems",
            str(out / "problems" / f"{shard}.parquet"),
            "--out",
            str(tmp_path / f"{shard}.parquet"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pq.read_table(tmp_path / f"{shard}.parquet").equals(
        pq.read_table(out / "trees" / f"{shard}.parquet")
    )
    engines = json.loads((tmp_path / f"{shard}.stats.json").read_text())["engines"]
    assert engines["local"]["calls"] == 0 and engines["local"]["cache_hits"] > 0
    # The replay's saved cost: the generated tokens the first run paid for this shard (or took from
    # the cache itself, for a request it had sent before).
    first = json.loads((out / "trees" / f"{shard}.stats.json").read_text())["engines"]["local"]
    assert engines["local"]["cache_hit_tokens"] == first["completion_tokens"] + first["cache_hit_tokens"] > 0
    assert "Loading safetensors" not in proc.stderr


def test_a_bad_config_stops_the_workflow_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"run": "bad", "output_root": str(tmp_path), "policy": {"width": 0}}))
    proc = snakemake("--configfile", str(bad), "--dry-run")
    assert proc.returncode != 0
    assert "policy.width" in proc.stdout + proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("problems", "expected"),
    [
        ({"source": "no/such/file.jsonl"}, "config field problems.source 'no/such/file.jsonl': no such file"),
        (
            {"fields": {"problem": "question"}},
            "config field problems.fields.problem: column 'question' is not in",
        ),
    ],
)
def test_a_missing_source_or_column_stops_the_workflow_before_any_job(tmp_path, problems, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"run": "bad", "output_root": str(tmp_path), "problems": problems}))
    proc = snakemake("--configfile", str(bad))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in out
    assert "Traceback" not in out and "rule problems" not in out and not (tmp_path / "bad").exists()


def test_the_snakemake_log_states_the_yield_and_the_stats_explain_it(run):
    out, _ = run
    log = (out.parent.parent / "snakemake.log").read_text()
    report = json.loads((out / "stats.json").read_text())["yield_report"]
    assert f"yield: {report['message']}" in log
    assert report["problems"] == len(EASY_PROBLEMS) and 0 <= report["share"] <= 1
    for cause in report["causes"]:
        assert cause["setting"] in log and 0 < cause["count"] <= cause["of"]
    agreement = json.loads((out / "stats.json").read_text())["tree_value_agreement"]
    assert agreement["steps"] == agreement["agree"] + agreement["disagree"] > 0


def test_policy_critic_and_polisher_can_each_use_an_openai_endpoint(server_url, tmp_path):
    key = "sk-journey-sentinel-0123456789"
    config = write_config(
        tmp_path,
        "endpoint",
        EASY_PROBLEMS[:2],
        engines={"endpoint": {**served_engine(server_url), "api_key_env": "JOURNEY_TEST_KEY"}},
        policy={"engine": "endpoint"},
        critic={"engine": "endpoint"},
        polish={"engine": "endpoint"},
    )
    proc = snakemake("--configfile", str(config), env={**os.environ, "JOURNEY_TEST_KEY": key})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    out = tmp_path / "outputs" / "endpoint"
    nodes = pq.read_table(out / "trees" / "shard-00000.parquet").to_pylist()
    assert {n["model"] for n in nodes if n["parent_id"] >= 0} == {SERVED_MODEL_NAME}
    judged = [n for n in nodes if n["verdict"] in ("correct", "incorrect")]
    assert judged and all(n["rationale"] for n in judged)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tokens"]["policy"] > 0 and stats["tokens"]["scorer"] > 0
    # The key came from the environment and went nowhere else.
    assert_no_secret(key, proc, out)


def test_every_format_loads_with_datasets_and_trl_reads_it(run):
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import (
        is_conversational,
        is_conversational_from_value,
        maybe_apply_chat_template,
        maybe_convert_to_chatml,
    )

    from pipeline.formats import FORMATS, output_files
    from pipeline.model_files import resolve_model

    out, _ = run
    sft = out / "sft"
    stats = json.loads((out / "stats.json").read_text())
    files = [f for f in output_files(list(FORMATS)) if f.endswith(".parquet")]
    assert list(stats["exports"]) == files
    data = {f: load_dataset("parquet", data_files=str(sft / f), split="train") for f in files}
    for f in files:
        assert data[f].num_rows == stats["exports"][f], f
    assert data["preference.parquet"].num_rows and data["revision.parquet"].num_rows
    assert data["stepwise.parquet"].num_rows
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    for f, keys in [
        ("journey.parquet", {"text"}),
        ("preference.parquet", {"prompt", "chosen", "rejected"}),
        ("step_preference.parquet", {"prompt", "chosen", "rejected"}),
        ("revision.parquet", {"prompt", "completion"}),
    ]:
        for row in data[f]:
            assert is_conversational(row), f
            rendered = maybe_apply_chat_template(row, tokenizer)
            assert all(isinstance(rendered[k], str) and rendered[k] for k in keys), f
    for row in data["journey_sharegpt.parquet"]:
        assert is_conversational_from_value(row)
        # TRL renames the keys (from/value -> role/content) and keeps sharegpt's role names.
        assert is_conversational(maybe_convert_to_chatml(row))

    trees = shard_rows(out / "trees")
    nodes = {(n["problem_id"], n["node_id"]): n for n in trees}
    for p in data["preference.parquet"]:
        assert nodes[p["problem_id"], p["chosen_leaf"]]["answer_correct"] is True
        assert nodes[p["problem_id"], p["rejected_leaf"]]["answer_correct"] is False
        assert p["chosen"] != p["rejected"]
    pairs = [
        (p["problem_id"], p["chosen"][0]["content"], p["rejected"][0]["content"])
        for p in data["preference.parquet"]
    ]
    assert len(pairs) == len(set(pairs))
    # Step pairs on the real trees: siblings, one leading to a verified leaf, one whose paths all fail.
    for p in data["step_preference.parquet"]:
        good, bad = nodes[p["problem_id"], p["chosen_id"]], nodes[p["problem_id"], p["rejected_id"]]
        assert good["parent_id"] == bad["parent_id"] == p["parent_id"] and good["step"] != bad["step"]
        assert good["reaches_correct"] is True and bad["reaches_correct"] is False
        assert p["chosen"][0]["content"].endswith(good["step"]) and p["chosen_value"] == good["tree_value"]
        assert p["chosen"][0]["content"].startswith(p["prefix"]) and p["rejected_value"] == 0.0
    children: dict[tuple, list[dict]] = {}
    for n in trees:
        children.setdefault((n["problem_id"], n["parent_id"]), []).append(n)

    def texts(kids: list[dict], reaches: bool) -> set[str]:
        return {n["step"].strip() for n in kids if n["reaches_correct"] is reaches}

    pairable = [
        k
        for k, kids in children.items()
        if any(g != b for g in texts(kids, True) for b in texts(kids, False))
    ]
    assert bool(pairable) == bool(data["step_preference.parquet"].num_rows), pairable
    for r in data["stepwise.parquet"]:
        assert len(r["labels"]) == len(r["completions"]) == len(r["soft_labels"]) > 0
        assert r["label_source"] == "critic" and all(v is None or 0 <= v <= 1 for v in r["soft_labels"])
    for r in data["revision.parquet"]:
        assert nodes[r["problem_id"], r["correct_leaf"]]["answer_correct"] is True
        assert r["n_wrong"] <= 4 and r["prompt"][-1]["role"] == "user"
    for r in data["o1_journey.parquet"]:
        assert r["answer"] and r["longCOT"].endswith(f"\n#### {r['answer']}")
    info = json.loads((sft / "dataset_info.json").read_text())
    assert {e["file_name"] for e in info.values()} == {
        "journey_sharegpt.parquet",
        "shortcut_sharegpt.parquet",
    }
    card = (sft / "README.md").read_text()
    assert all(f"| {f} | {n} |" in card for f, n in stats["exports"].items())


def test_the_report_has_an_index_and_a_page_per_problem(run):
    out, _ = run
    assert (out / "report" / "index.html").is_file()
    assert len(list((out / "report" / "problems").glob("*.html"))) == len(EASY_PROBLEMS)
