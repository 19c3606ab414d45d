"""Small runs written straight to disk (problems, trees, thoughts, stats) for the report's tests:
hostile text in every field a page shows, a judged run, a run with several methods."""

from __future__ import annotations

import json
from dataclasses import asdict

from pipeline.io.tables import NODE_SCHEMA, POLISHED_SCHEMA, PREFERENCE_SCHEMA, PROBLEM_SCHEMA, write_table
from trees.model import Node

EVIL = "Is <script>alert(1)</script> bigger than </script><!-- & 2?"


EVIL_ID = 'evil/../"id" <b>'


def tiny_nodes(pid: str, problem: str) -> list[Node]:
    return [
        Node(pid, 0, -1, 0, problem),
        Node(pid, 1, 0, 1, "Try 1 + 1 = 3 </script><script>alert(2)</script>", verdict="incorrect",
             score=0.1, rationale="1 + 1 is 2, not 3 <img src=x onerror=alert(3)>", scorer="judge",
             kept=False, prune_reason="judged incorrect"),
        Node(pid, 2, 0, 1, "1 + 1 = 2", verdict="correct", score=0.9, rationale="right step", scorer="judge"),
        Node(pid, 3, 2, 2, "So \\boxed{2}", is_terminal=True, answer="2", answer_correct=True,
             verdict="correct", score=1.0, rationale="final answer matches"),
        Node(pid, 4, 2, 2, "So \\boxed{5}", is_terminal=True, answer="5", answer_correct=False,
             verdict="incorrect", score=0.0, rationale="wrong final"),
    ]  # fmt: skip


def tiny_thought(pid: str, problem: str, kind: str, visits: list[int], text: str) -> dict:
    return {
        "problem_id": pid,
        "thought_id": f"{pid}/{kind}-0",
        "kind": kind,
        "problem": problem,
        "reference": "2",
        "text": text,
        "steps": ["1 + 1 = 2", "So \\boxed{2}"],
        "visits": visits,
        "shortcut": [0, 2, 3],
        "n_steps": 2,
        "n_backtracks": 1 if kind == "journey" else 0,
        "answer": "2",
        "seed": 0,
        "raw_text": text,
        "polished_text": "Polished </script><script>alert(4)</script>" if kind == "journey" else "",
        "polish_status": "fallback" if kind == "journey" else "passthrough",
        "polish_failed": ["answer: <missing>"] if kind == "journey" else [],
        "polish_tokens": 10,
        "polish_model": "m",
    }


# A stats.json from before the yield report, tree values and node counts.
OLD_STATS = {"run": "tiny", "wall_s": {"trees": 1.5}, "tokens": {"policy": 7}}


def write_run(
    run,
    problems: list[tuple[str, str]],
    journeys: set[str] | None = None,
    shards: int = 2,
    *,
    reference: str = "2",
    nodes=tiny_nodes,
    stats: dict = OLD_STATS,
):
    """problems: (problem_id, text); journeys: ids that get a journey (default: all)."""
    journeys = {pid for pid, _ in problems} if journeys is None else journeys
    for s in range(shards):
        part = problems[s::shards]
        rows = [
            {"problem_id": p, "problem": t, "answer": reference, "source": "t", "meta": "{}"} for p, t in part
        ]
        write_table(rows, PROBLEM_SCHEMA, run / "problems" / f"shard-{s:05d}.parquet")
        nodes_rows = [asdict(n) for p, t in part for n in nodes(p, t)]
        write_table(nodes_rows, NODE_SCHEMA, run / "trees" / f"shard-{s:05d}.parquet")
        thoughts = [
            tiny_thought(p, t, kind, visits, text)
            for p, t in part
            if p in journeys
            for kind, visits, text in [
                (
                    "journey",
                    [0, 1, 0, 2, 3],
                    "Try 3. Wait, that is wrong. Let me go back. Therefore \\boxed{2}.",
                ),
                ("shortcut", [0, 2, 3], "1 + 1 = 2. So \\boxed{2}."),
            ]
        ]
        write_table(thoughts, POLISHED_SCHEMA, run / "polished" / f"shard-{s:05d}.parquet")
    (run / "stats.json").write_text(json.dumps(stats))


# A run as stats.json describes it since the yield report: policy.max_depth 2, a critic that calls
# steps correct whose answers are wrong, a leaf cut at max depth and one that gave no answer.
EVIL_REFERENCE = "\\frac{1}{2} </script><b>ref</b>"


def judged_nodes(pid: str, problem: str) -> list[Node]:
    judged = {"verdict": "correct", "scorer": "critic", "score": 0.9}
    return [
        Node(pid, 0, -1, 0, problem, tree_value=0.25, reaches_correct=True),
        Node(pid, 1, 0, 1, "Halve it.", tree_value=0.5, reaches_correct=True, **judged),
        Node(pid, 2, 1, 2, "So \\boxed{<b>7</b>}", is_terminal=True, answer="<b>7</b>", answer_correct=False,
             answer_checker="math-verify", tree_value=0.0, reaches_correct=False, **judged),
        Node(pid, 3, 1, 2, "So \\boxed{1/2}", is_terminal=True, answer="1/2", answer_correct=True,
             answer_checker="math-verify", tree_value=1.0, reaches_correct=True, **judged),
        Node(pid, 4, 0, 1, "Hmm, consider", verdict="unknown", tree_value=0.0, reaches_correct=False),
        Node(pid, 5, 4, 2, "and then we", is_terminal=True, verdict="incorrect", scorer="critic",
             tree_value=0.0, reaches_correct=False, tokens=50),
        Node(pid, 6, 0, 1, "I am done.", is_terminal=True, verdict="incorrect", scorer="critic",
             tree_value=0.0, reaches_correct=False, kept=False, prune_reason="judged incorrect"),
    ]  # fmt: skip


NEW_STATS = {
    "run": "judged",
    "nodes_generated": 6,
    "nodes_kept": 5,
    "nodes_pruned": 1,
    "wall_s": {"problems": 0.213, "trees": 141.378, "thoughts": 0.6, "polish": 146.05, "export": 0.2},
    "tokens": {"policy": 40},
    "yield_report": {
        "problems": 16,
        "problems_with_journey": 3,
        "share": 0.19,
        "low": True,
        "message": "3 of 16 problems gave a journey (19%).",
        "causes": [
            {"cause": "leaves cut at max depth without a final answer", "count": 226, "of": 298,
             "unit": "terminal nodes", "setting": "policy.max_depth", "advice": "raise policy.max_depth (now 4)"},
            {"cause": "trees killed by pruning at depth 1", "count": 5, "of": 16, "unit": "trees",
             "setting": "pruning.keep", "advice": "raise pruning.keep <or> policy.width"},
        ],
    },
    "tree_value_agreement": {"steps": 40, "agree": 30, "disagree": 10, "share_disagree": 0.25,
                             "scorer_correct_tree_dead": 8, "scorer_incorrect_tree_alive": 2},
    "stages": {"polish": {"passed_by_attempt": {"2": 3, "1": 5, "10": 1}}},
}  # fmt: skip


def write_judged_run(run):
    write_run(run, [("half", "What is half of 1?")], set(), 1, reference=EVIL_REFERENCE,
               nodes=judged_nodes, stats=NEW_STATS)  # fmt: skip
    (run / "config.yaml").write_text("run: judged\npolicy:\n  max_depth: 2\n  max_step_tokens: 50\n")


# Two runs with several methods. Run A: trees for p1-p3; the tree walk gives journeys for p1 and p2;
# propose-critique verifies p1 and p2 and fails p3 (its thought holds a script); outcome samples two
# solutions for p1 (one verifies) and two for p2 (none does). Run B: the same for p2, p4 and p3 (so
# its propose-critique fails p3 too), other stats.json figures, twice the engine tokens.
def method_row(pid: str, method: str, kind: str, text: str, correct: bool, **extra) -> dict:
    n = extra.pop("n", 0)
    row = {
        "problem_id": pid, "thought_id": f"{pid}/{method}/{kind}-{n}", "kind": kind,
        "problem": f"What is {pid}?", "reference": "2", "text": text, "steps": ["s"], "visits": [],
        "shortcut": [], "n_steps": 1, "n_backtracks": 0, "answer": "2" if correct else "3", "seed": 0,
        "method": method, "n_reflections": 0, "correct": correct, "engine_tokens": 0,
        "raw_text": text, "polished_text": "", "polish_status": "passthrough", "polish_failed": [],
    }  # fmt: skip
    return {**row, **extra}


PC_TEXT_1 = "wait " * 3 + "x " * 7  # 10 words, 3 "wait"


PC_TEXT_2 = "therefore " + "y " * 9  # 10 words, 1 "therefore"


PC_EVIL = "Step one. <script>alert(9)</script> Wait, I give up."


def methods_rows(pids: list[str], scale: int = 1) -> list[dict]:
    tree = [
        method_row(pid, "tree", "journey", "Try 3. Wait, go back. Therefore \\boxed{2}.", True,
                    visits=[0, 1, 0, 2, 3], shortcut=[0, 2, 3], n_backtracks=1, n_reflections=1,
                    polished_text="Polished walk", polish_status=status)
        for pid, status in zip(pids[:2], ["polished", "fallback"])
    ]  # fmt: skip
    pc = [
        method_row(pids[0], "propose-critique", "journey", PC_TEXT_1, True, n_steps=3, n_backtracks=2,
                    n_reflections=3, engine_tokens=100 * scale, polish_status="polished",
                    polished_text="Polished " + PC_TEXT_1),
        method_row(pids[1], "propose-critique", "journey", PC_TEXT_2, True, n_steps=5, n_backtracks=1,
                    n_reflections=2, engine_tokens=200 * scale, polish_status="polished",
                    polished_text=PC_TEXT_2),
        method_row(pids[2], "propose-critique", "journey", PC_EVIL, False, n_steps=2,
                    engine_tokens=330 * scale),
    ]  # fmt: skip
    outcome = [
        method_row(pid, "outcome", "solution", f"Solution {i}: \\boxed{{{2 if ok else 3}}}", ok, n=i,
                    engine_tokens=10)
        for pid, oks in [(pids[0], [True, False]), (pids[1], [False, False])]
        for i, ok in enumerate(oks)
    ]  # fmt: skip
    return tree + pc + outcome


def write_methods_run(run, pids: list[str], stats: dict, scale: int = 1) -> None:
    problems = [{"problem_id": p, "problem": f"What is {p}?", "answer": "2", "source": "t", "meta": "{}"}
                for p in pids]  # fmt: skip
    write_table(problems, PROBLEM_SCHEMA, run / "problems" / "shard-00000.parquet")
    nodes = [asdict(n) for p in pids for n in tiny_nodes(p, f"What is {p}?")]
    write_table(nodes, NODE_SCHEMA, run / "trees" / "shard-00000.parquet")
    write_table(methods_rows(pids, scale), POLISHED_SCHEMA, run / "polished" / "shard-00000.parquet")
    pairs = [{"problem_id": pids[0], "source": s} for s in ("tree", "tree", "outcome")]
    write_table(pairs, PREFERENCE_SCHEMA, run / "sft" / "preference.parquet")
    (run / "stats.json").write_text(json.dumps(stats))


STATS_A = {
    "run": "alpha", "problems_valid": 3, "problems_with_journey": 2, "nodes_generated": 12,
    "nodes_kept": 9, "nodes_pruned": 3,
    "correct_leaves": 3, "journeys": 2, "journeys_with_backtrack": 2,
    "backtracks_per_journey": {"mean": 1.0}, "tokens": {"policy": 500, "scorer": 100},
    "polish_guard_pass_rate": 0.5, "wall_s": {"trees": 10.0, "polish": 5.0},
}  # fmt: skip


STATS_B = {
    **STATS_A, "run": "beta", "nodes_generated": 20, "tokens": {"policy": 800, "scorer": 100},
    "polish_guard_pass_rate": 0.75, "wall_s": {"trees": 12.5, "polish": 5.0},
}  # fmt: skip
