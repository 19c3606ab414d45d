"""`python -m pipeline estimate` on the embedded model: the first problems run for real, the figures
scale to the dataset, and the real run then pays nothing again for the sampled problems."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import EASY_PROBLEMS
from tests.snakemake_run import POLISH, ROOT

pytestmark = pytest.mark.vllm

PRICES = {"input": 0.15, "output": 0.6}
PROBLEMS = [*EASY_PROBLEMS, {"problem_id": "add-1-1", "problem": "What is 1 + 1?", "answer": "2"}]


def pipeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def estimated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("estimate")
    source = tmp / "problems.jsonl"
    source.write_text("".join(json.dumps({**p, "id": p["problem_id"]}) + "\n" for p in PROBLEMS))
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": "est",
                "output_root": str(tmp / "outputs"),
                "problems": {"source": str(source), "shard_size": 2},
                "engines": {"local": {"prices": PRICES}},
                "policy": {"width": 2, "max_depth": 2},
                "polish": POLISH,
            }
        )
    )
    out = tmp / "outputs" / "est" / "estimate"
    proc = pipeline("estimate", "--config", str(config), "--sample", "2", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return config, out, json.loads((out / "estimate.json").read_text())


def test_the_sample_scales_to_the_dataset_with_its_spread(estimated):
    _, out, est = estimated
    assert (est["sample_problems"], est["dataset_problems"], est["shards"]) == (2, 4, 2)
    sidecars = [
        json.loads((out / stage / "sample.stats.json").read_text()) for stage in ("trees", "polished")
    ]
    # One model load served every stage; each stage counts only its own calls.
    tokens_in = sum(s["engines"]["local"]["prompt_tokens"] for s in sidecars if s.get("engines"))
    tokens_out = sum(s["engines"]["local"]["completion_tokens"] for s in sidecars if s.get("engines"))
    sample = est["sample"]["costs"]["total"]
    assert (sample["input_tokens"], sample["output_tokens"]) == (tokens_in, tokens_out) and tokens_out > 0
    assert sample["usd"] == pytest.approx((tokens_in * 0.15 + tokens_out * 0.6) / 1e6, abs=1e-5)
    dataset = est["dataset"]
    assert (dataset["input_tokens"], dataset["output_tokens"]) == (2 * tokens_in, 2 * tokens_out)
    assert dataset["usd"] == pytest.approx(2 * sample["usd"], abs=1e-3)
    spread = est["per_problem_generated_tokens"]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert dataset["generated_tokens_range"] == [4 * spread["min"], 4 * spread["max"]]
    assert set(dataset["wall_s"]) == {"trees", "thoughts", "polish"} and dataset["wall_s"]["trees"] > 0


def test_the_real_run_finds_the_sampled_problems_paid_for(estimated):
    config, out, est = estimated
    run = out.parent
    assert est["cache_entries_merged"]["trees"] > 0
    assert pipeline("problems", "--config", str(config), "--out-dir", str(run / "problems")).returncode == 0
    shard = run / "trees" / "shard-00000.parquet"
    proc = pipeline(
        "trees",
        "--config",
        str(config),
        "--problems",
        str(run / "problems" / "shard-00000.parquet"),
        "--out",
        str(shard),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    engines = json.loads(shard.with_name("shard-00000.stats.json").read_text())["engines"]["local"]
    # Every call was answered by the estimate's cache: the model never loaded, the trees are the sample's.
    assert engines["calls"] == 0 and engines["cache_hits"] > 0 and "device" not in engines
    assert pq.read_table(shard).equals(pq.read_table(out / "trees" / "sample.parquet"))
