"""The code stays lint-clean and formatted (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["pipeline", "trees", "tests", "benchmarks"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_check_is_clean():
    proc = ruff("check")
    assert proc.returncode == 0, proc.stdout


def test_ruff_format_leaves_nothing_to_change():
    proc = ruff("format", "--check")
    assert proc.returncode == 0, proc.stdout
