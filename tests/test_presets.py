"""The shipped presets (config/presets/): each validates, reads its dataset as the Hub stores it, and
plans its jobs on SLURM; the laptop preset runs end to end against a real local server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import deep_merge, load
from tests.snakemake_run import ROOT, snakemake

pytestmark = pytest.mark.snakemake

PRESETS = sorted((ROOT / "config" / "presets").glob("*.yaml"))
NATALIA = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)
# Rows as the presets' Hub datasets store them: GSM8K (question, answer) and MATH (problem, solution, ...).
HUB_ROWS = {
    "openai/gsm8k": [
        {
            "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?",
            "answer": NATALIA,
        },
        {
            "question": "A shop sells 1,000 pens a day. How many pens does it sell in a day?",
            "answer": "It sells 1,000 pens.\n#### 1,000",
        },
    ],
    "DigitalLearningGmbH/MATH-lighteval": [
        {
            "problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
            "level": "Level 1",
            "type": "Prealgebra",
            "solution": "We add: $\\frac14 + \\frac14 = \\frac24$, which is $\\boxed{\\frac{1}{2}}$.",
        },
        {
            "problem": "Compute $3 \\cdot 4$.",
            "level": "Level 1",
            "type": "Prealgebra",
            "solution": "$3 \\cdot 4 = 12$, so the answer is $\\boxed{12}$.",
        },
    ],
}
EXPECTED_ANSWERS = {
    "openai/gsm8k": ["72", "1000"],
    "DigitalLearningGmbH/MATH-lighteval": ["\\frac{1}{2}", "12"],
}


def preset(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def in_process(raw: dict, role: str) -> bool:
    return load(overrides=raw).engines[raw.get(role, {}).get("engine", "local")].kind == "vllm"


def local_copy(raw: dict, tmp: Path) -> dict:
    """The preset with its Hub source swapped for a local file in the same layout, outputs in tmp."""
    source = raw.get("problems", {}).get("source")
    problems = {}
    if source in HUB_ROWS:
        path = tmp / "hub.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in HUB_ROWS[source]))
        problems = {"source": str(path), "split": "train", "subset": None}
    return deep_merge(raw, {"output_root": str(tmp / "outputs"), "problems": problems})


def test_every_preset_is_covered_by_the_dataset_rows_here():
    assert {p.name for p in PRESETS} >= {
        "o1-journey-prm.yaml",
        "o1-journey-critic.yaml",
        "gsm8k-endpoints.yaml",
        "laptop.yaml",
    }
    for path in PRESETS:
        source = preset(path).get("problems", {}).get("source")
        assert source is None or source in HUB_ROWS, (path.name, source)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_the_preset_validates(path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "check-config", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"] == path.stem


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_the_preset_reads_its_dataset_and_plans_its_slurm_jobs(path, tmp_path):
    raw = local_copy(preset(path), tmp_path)
    config = tmp_path / path.name
    config.write_text(yaml.safe_dump(raw))
    local = snakemake("--configfile", str(config), "--until", "problems")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    run = tmp_path / "outputs" / path.stem
    source = preset(path).get("problems", {}).get("source")
    if source in HUB_ROWS:
        rows = pq.read_table(run / "problems" / "shard-00000.parquet").to_pylist()
        assert [r["answer"] for r in rows] == EXPECTED_ANSWERS[source]
        # The worked solution is kept whole beside the answer read out of it.
        field = raw["problems"]["fields"]["answer"]
        assert [json.loads(r["meta"])[field] for r in rows] == [h[field] for h in HUB_ROWS[source]]

    proc = snakemake("--configfile", str(config), "--dry-run", profile="profiles/slurm")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = dict(re.findall(r"^rule (\w+):.*?resources: ([^\n]*)", out, flags=re.M | re.S))
    assert {"trees", "polish", "export"} <= set(jobs), out[-3000:]
    # A GPU for the jobs whose engines load a model in-process, none for endpoint-only jobs.
    for rule, role in (("trees", "policy"), ("polish", "polish")):
        assert ("gpu=1" in jobs[rule]) == in_process(raw, role), (rule, jobs[rule])
    assert "gpu=" not in jobs["export"]


def test_the_laptop_preset_runs_end_to_end_against_a_local_server(server_url, tmp_path):
    raw = deep_merge(
        preset(ROOT / "config" / "presets" / "laptop.yaml"),
        {
            "output_root": str(tmp_path / "outputs"),
            "engines": {"server": {"base_url": server_url}},
            "problems": {"limit": 2, "shard_size": 2},
            "policy": {"width": 2, "max_depth": 2},
        },
    )
    config = tmp_path / "laptop.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = snakemake("--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = json.loads((tmp_path / "outputs" / "laptop" / "stats.json").read_text())
    assert stats["trees_built"] == 2 and stats["nodes_generated"] > 2
    tree_stats = json.loads(
        (tmp_path / "outputs" / "laptop" / "trees" / "shard-00000.stats.json").read_text()
    )
    assert set(tree_stats["engines"]) == {"server"} and tree_stats["engines"]["server"]["calls"] > 0
