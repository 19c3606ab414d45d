"""The workflow lints clean, and the SLURM profile plans one GPU job per shard for the model stages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.snakemake_run import snakemake as run_snakemake

pytestmark = pytest.mark.snakemake

ROOT = Path(__file__).resolve().parent.parent


def snakemake(*args: str):
    return run_snakemake(*args, profile=None)


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_slurm_dry_run_asks_a_gpu_for_the_model_stages_only(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": "slurm",
                "output_root": str(tmp_path),
                "problems": {"shard_size": 5},
                "thoughts": {"methods": ["tree", "debate"]},
            }
        )
    )
    # The shard count is known once the (CPU-only, seconds) problems checkpoint has run.
    local = snakemake("--profile", "profiles/local", "--configfile", str(config), "--until", "problems")
    assert local.returncode == 0, local.stdout + local.stderr
    proc = snakemake("--profile", "profiles/slurm", "--configfile", str(config), "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert counts["trees"] == counts["thoughts"] == counts["polish"] == "4"  # 16 sample problems / 5
    assert counts["thoughts_tree"] == counts["thoughts_method"] == "4"
    assert counts["export"] == "1"
    jobs = re.findall(r"^rule (\w+):.*?resources: ([^\n]*)", out, flags=re.M | re.S)
    assert jobs
    for rule, resources in jobs:
        if rule in ("trees", "thoughts_method", "polish"):
            assert "gpu=1" in resources and "cpus_per_gpu=8" in resources and "mem_mb=64000" in resources
        else:
            assert "gpu=" not in resources, (rule, resources)
