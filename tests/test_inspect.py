"""Terminal inspection: one problem's tree with its journey, and a summary of any stage's parquet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.io.tables import NODE_SCHEMA, THOUGHT_SCHEMA, write_table
from trees.model import Node

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)


def write_shard(tmp: Path) -> tuple[Path, Path]:
    nodes = [
        Node("p", 0, -1, 0, "What is 1 + 1? <script>x</script>"),
        Node(
            "p",
            1,
            0,
            1,
            "1 + 1 = 3",
            verdict="incorrect",
            score=0.0,
            kept=False,
            prune_reason="judged incorrect",
        ),
        Node("p", 2, 0, 1, "1 + 1 = 2, so \\boxed{2}", True, "2", True, 1.0, "correct"),
        Node("q", 0, -1, 0, "Other problem"),
    ]
    trees = tmp / "trees.parquet"
    write_table([n.__dict__ for n in nodes], NODE_SCHEMA, trees)
    thought = {
        "problem_id": "p", "thought_id": "p/journey-0", "kind": "journey", "problem": "What is 1 + 1?",
        "reference": "2", "text": "...", "steps": ["1 + 1 = 3", "1 + 1 = 2, so \\boxed{2}"],
        "visits": [0, 1, 0, 2], "shortcut": [0, 2], "n_steps": 2, "n_backtracks": 1, "answer": "2", "seed": 0,
    }  # fmt: skip
    thoughts = tmp / "thoughts.parquet"
    write_table([thought], THOUGHT_SCHEMA, thoughts)
    return trees, thoughts


def test_show_tree_prints_verdicts_prune_reasons_and_the_journey_walk(tmp_path):
    trees, thoughts = write_shard(tmp_path)
    proc = cli("show-tree", "--trees", str(trees), "--problem-id", "p", "--thoughts", str(thoughts))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and "Other problem" not in proc.stdout
    assert lines[0].startswith("What is 1 + 1? <script>x</script>") and "walk 0,2" in lines[0]
    assert (
        lines[1].startswith("  1 + 1 = 3") and "walk 1" in lines[1] and "pruned: judged incorrect" in lines[1]
    )
    assert "| * |" in lines[2] and "walk 3" in lines[2] and "answer '2' correct" in lines[2]


def test_show_tree_names_a_missing_problem(tmp_path):
    trees, _ = write_shard(tmp_path)
    proc = cli("show-tree", "--trees", str(trees), "--problem-id", "nope")
    assert proc.returncode == 2 and "no tree for problem 'nope'" in proc.stderr


def test_inspect_summarises_any_parquet(tmp_path):
    trees, _ = write_shard(tmp_path)
    proc = cli("inspect", str(trees), "--rows", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"4 rows, {len(NODE_SCHEMA)} columns")
    assert "  prune_reason: string" in proc.stdout
    assert "row 0:" in proc.stdout and "row 1:" not in proc.stdout
