"""Scorer evaluation: the three readers (bad rows to rejects naming the field), the eval config, the
critic variants on the real engine, and the stage through its Python entry point, the CLI (a rerun
served by the response cache) and the Snakemake `eval` target."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import ConfigError, CriticConfig, load
from pipeline.engines.base import Completion, EngineStats, schema_string
from pipeline.eval.readers import read_solutions
from pipeline.prompts import CriticPrompt
from pipeline.scorers import SCORERS, make_scorer
from pipeline.scorers.base import StepToScore
from pipeline.scorers.critic import Critic, schema_text
from pipeline.stages.eval_scorer import run_eval_scorer, step_items
from tests.snakemake_run import ROOT, snakemake

SAMPLE = ROOT / "pipeline/data/step_labels_sample.jsonl"


def _eval_cfg(tmp_path: Path, rows: list, **eval_fields):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return load(overrides={"eval": {"source": str(source), "group_by": [], **eval_fields}}).eval


def _rejects(loaded) -> dict[int, tuple[str, str]]:
    return {r["row"]: (r["field"], r["reason"]) for r in loaded.rejects}


# ---------------------------------------------------------------- readers


def test_processbench_rows_and_rejects(tmp_path):
    good = {"id": "a", "problem": "What is 2 + 3?", "steps": ["We add.", "2 + 3 = 6."], "label": 1, "g": "x"}
    rows = [
        good,
        {"id": "b", "problem": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "label": -1, "answer": 2},
        {"id": "c", "problem": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "label": 1},
        {"id": "d", "problem": "What is 1 + 1?", "steps": [], "label": -1},
        {"id": "e", "problem": "What is 1 + 1?", "steps": ["ok", ""], "label": -1},
        {"id": "f", "problem": "What is 1 + 1?", "steps": ["ok"], "label": True},
        {"id": "g", "steps": ["ok"], "label": -1},
        '{"id": "h", "problem": ',
        {**good, "label": 0},
        [1, 2],
    ]
    loaded = read_solutions(_eval_cfg(tmp_path, rows, group_by=["g"]))
    a, b = loaded.solutions
    assert (a.solution_id, a.steps, a.labels, a.first_error) == (
        "a",
        ["We add.", "2 + 3 = 6."],
        [True, False],
        1,
    )
    assert (b.labels, b.first_error, b.reference, a.reference) == ([True], -1, "2", "")
    assert a.groups == {"g": "x"} and b.groups == {"g": "(none)"}
    rejects = _rejects(loaded)
    assert {row: field for row, (field, _) in rejects.items()} == {
        2: "label",
        3: "steps",
        4: "steps[1]",
        5: "label",
        6: "problem",
        7: "row",
        8: "id",
        9: "row",
    }
    assert "not -1 or a step index (0 to 0)" in rejects[2][1]
    assert "duplicate solution 'a' (first seen at row 0)" in rejects[8][1]
    assert loaded.rejects[0]["raw"].startswith('{"id": "c"')


def _prm_step(*completions, chosen=0, human=None):
    return {
        "completions": [{"text": t, "rating": r, "flagged": None} for t, r in completions],
        "human_completion": human,
        "chosen_completion": chosen,
    }


def _prm_row(steps, finish):
    return {
        "labeler": "x",
        "question": {"problem": "What is 2 + 3?", "ground_truth_answer": "5"},
        "label": {"steps": steps, "finish_reason": finish, "total_time": 1},
    }


def test_prm800k_native_rows(tmp_path):
    rows = [
        # Phase 2: labelling stops at the first -1, whose step has no chosen completion.
        _prm_row(
            [_prm_step(("We add.", 0)), _prm_step(("2 + 3 = 6.", -1), ("2 + 3 = 7.", -1), chosen=None)],
            "found_error",
        ),
        # A correct solution: ratings 0 and +1 are not errors.
        _prm_row([_prm_step(("We add.", 0)), _prm_step(("So 5.", 1), ("So 6.", -1), chosen=0)], "solution"),
        # Phase 1: every completion wrong, the labeler wrote the step; the walk goes on after it.
        _prm_row(
            [
                _prm_step(("2 * 3.", -1), chosen=None, human={"text": "We add 2 and 3.", "rating": None}),
                _prm_step(("So 5.", 1)),
            ],
            "solution",
        ),
        _prm_row([_prm_step(("We add.", 0)), _prm_step(("Hmm.", 0), chosen=None)], "give_up"),
        _prm_row([_prm_step(("We add.", 0)), _prm_step(("So 5.", 2))], "solution"),
        _prm_row([_prm_step(("We add.", 0), chosen=3)], "solution"),
        {"label": {"steps": []}},
    ]
    loaded = read_solutions(_eval_cfg(tmp_path, rows, layout="prm800k"))
    found, correct, human = loaded.solutions
    assert (found.steps, found.labels, found.first_error) == (["We add.", "2 + 3 = 6."], [True, False], 1)
    assert (correct.steps, correct.labels, correct.reference) == (["We add.", "So 5."], [True, True], "5")
    assert (human.steps, human.labels) == (["We add 2 and 3.", "So 5."], [True, True])
    assert found.solution_id != correct.solution_id and found.solution_id.startswith("s-")
    rejects = _rejects(loaded)
    assert {row: field for row, (field, _) in rejects.items()} == {
        3: "label.finish_reason",
        4: "label.steps[1].completions[0].rating",
        5: "label.steps[0].chosen_completion",
        6: "question.problem",
    }
    assert "'give_up' and no step rated -1" in rejects[3][1]


def test_math_shepherd_rows(tmp_path):
    text = "What is 2 + 3? Step 1: We add 2 and 3. ки\nStep 2: 2 + 3 = 6. The answer is: 6 ки"
    good = {"input": text, "label": text.replace("ки", "+", 1).replace("ки", "-"), "task": "GSM8K"}
    rows = [
        good,
        {**good, "label": text.replace("ки", "?")},
        {"input": "What is 2 + 3? We add. ки", "label": "What is 2 + 3? We add. +"},
        {"input": text + " more", "label": good["label"] + " more"},
    ]
    loaded = read_solutions(_eval_cfg(tmp_path, rows, layout="math-shepherd", group_by=["task"]))
    (sol,) = loaded.solutions
    assert sol.problem == "What is 2 + 3?"
    assert sol.steps == ["Step 1: We add 2 and 3.", "Step 2: 2 + 3 = 6. The answer is: 6"]
    assert (sol.labels, sol.first_error, sol.groups) == ([True, False], 1, {"task": "GSM8K"})
    rejects = _rejects(loaded)
    assert {row: field for row, (field, _) in rejects.items()} == {1: "label", 2: "input", 3: "input"}
    assert "each 'ки' replaced by + or -" in rejects[1][1] and "Step 1:" in rejects[2][1]


def test_a_mapped_column_in_no_row_is_a_config_error(tmp_path):
    rows = [{"question": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "label": -1}]
    with pytest.raises(ConfigError, match=r"config field eval\.fields\.problem: column 'problem' is not in"):
        read_solutions(_eval_cfg(tmp_path, rows))
    assert read_solutions(_eval_cfg(tmp_path, rows, fields={"problem": "question"})).solutions
    with pytest.raises(ConfigError, match=r"config field eval\.group_by: column 'level'"):
        read_solutions(_eval_cfg(tmp_path, rows, fields={"problem": "question"}, group_by=["level"]))
    with pytest.raises(ConfigError, match=r"config field eval\.source .*no such file"):
        read_solutions(load(overrides={"eval": {"source": str(tmp_path / "missing.jsonl")}}).eval)


def test_the_shipped_sample_reads_clean():
    loaded = read_solutions(load().eval)
    assert loaded.rejects == [] and 30 <= len(loaded.solutions) <= 40
    kinds = {s.groups["category"] for s in loaded.solutions}
    assert kinds == {"correct", "arithmetic slip", "wrong operation", "wrong final answer"}
    assert {s.first_error for s in loaded.solutions} >= {-1, 0, 1, 2}
    problems = {json.loads(line)["problem"] for line in (ROOT / "pipeline/data/sample_problems.jsonl").open()}
    assert {s.problem for s in loaded.solutions} == problems


# ---------------------------------------------------------------- config and registry


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"critic": {"samples": 3}}, "critic.samples: 3 judgements need critic.temperature > 0"),
        (
            {"eval": {"variants": [{"name": "v", "scorer": "critic", "samples": 5}]}},
            "eval.variants.0.samples: 5 judgements need eval.variants.0.temperature > 0",
        ),
        (
            {"eval": {"variants": [{"name": "v", "scorer": "critic", "m": 3}]}},
            "eval.variants.0.m: not a field of critic",
        ),
        (
            {"eval": {"variants": [{"name": "v", "scorer": "monte-carlo", "m": 0}]}},
            "eval.variants.0.m: 0 is less than",
        ),
        (
            {"eval": {"variants": [{"name": "critic", "scorer": "critic"}]}},
            "eval.variants.0.name: 'critic' is already",
        ),
        (
            {"eval": {"variants": [{"name": "v", "scorer": "critic", "engine": "gpu"}]}},
            "eval.variants.0.engine: no engine",
        ),
        ({"eval": {"layout": "csv"}}, "eval.layout: 'csv' is not one of"),
        ({"eval": {"thresholds": [1.5]}}, "eval.thresholds.0: 1.5 is greater than the maximum"),
    ],
)
def test_bad_eval_and_critic_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(f"config field {message}")):
        load(overrides=overrides)


def test_the_registry_builds_every_scorer_the_schema_allows():
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    assert set(SCORERS) == set(schema["$defs"]["scorer"]["enum"])
    with pytest.raises(ValueError, match="unknown scorer 'oracle'"):
        make_scorer("oracle", load(), None, None)


def test_the_schema_keeps_the_verdict_or_the_rationale_first():
    schema = CriticPrompt("prompts/critic.yaml").schema()
    # Verdict first is the same string as before, so existing response caches stay valid.
    assert schema_text(schema, rationale_first=False) == schema_string(schema)
    ordered = json.loads(schema_text(schema, rationale_first=True))
    assert list(ordered["properties"]) == ["rationale", "correct"]


class Scripted:
    """Critic replies scripted in order; records the requests."""

    label = "scripted"

    def __init__(self, replies: list[str]):
        self.replies = replies
        self.requests = []
        self.stats = EngineStats()

    def generate(self, requests):
        self.requests.extend(requests)
        return [
            [Completion(self.replies[i % len(self.replies)], 9, "stop") for i in range(r.n)] for r in requests
        ]


def test_self_consistency_majority_share_and_ties():
    yes = '{"correct": true, "rationale": "Right."}'
    no = '{"correct": false, "rationale": "2 + 3 is 5."}'
    item = StepToScore("What is 2 + 3?", "5", (), "2 + 3 = 6.", seed=7)
    cfg = CriticConfig(engine="local", prompt="prompts/critic.yaml", temperature=0.7, samples=4)
    engine = Scripted([no, yes, no, "not json"])
    (score,), tokens = Critic(engine, cfg).score([item])
    # Three usable votes, one for correct; the unusable one is reported, not counted.
    assert (score.verdict, score.score, score.rationale) == ("incorrect", pytest.approx(1 / 3), "2 + 3 is 5.")
    assert score.problem == "critic reply is not valid JSON" and tokens == 4 * 9
    assert engine.requests[0].n == 4 and engine.requests[0].seed == 7
    (tie,), _ = Critic(Scripted([no, yes]), cfg).score([item])
    assert (tie.verdict, tie.score) == ("correct", 0.5)
    greedy = Scripted([yes])
    Critic(greedy, CriticConfig(engine="local", prompt="prompts/critic.yaml")).score([item])
    assert greedy.requests[0].n == 1 and greedy.requests[0].seed is None


# ---------------------------------------------------------------- the critic variants, real engine


@pytest.fixture(scope="module")
def sample_items():
    solutions = read_solutions(load(overrides={"eval": {"limit": 3}}).eval).solutions
    return step_items(1234, solutions)


@pytest.mark.parametrize("rationale_first, first_key", [(False, "correct"), (True, "rationale")])
def test_structured_output_writes_the_schema_order(vllm_engine, sample_items, rationale_first, first_key):
    cfg = load(overrides={"critic": {"rationale_first": rationale_first, "max_tokens": 160}}).critic
    critic = Critic(vllm_engine, cfg)
    outs = vllm_engine.generate([critic.request(item) for item in sample_items])
    for (c,) in outs:
        assert re.match(r'\{\s*"' + first_key + '"', c.text), c.text
    scores, tokens = critic.score(sample_items)
    assert tokens > 0 and len(scores) == len(sample_items)
    assert all(s.verdict in ("correct", "incorrect", "unknown") for s in scores)
    assert any(s.rationale for s in scores)


def test_self_consistency_with_the_real_engine(vllm_engine, sample_items):
    k = 3
    cfg = load(overrides={"critic": {"samples": k, "temperature": 0.7}}).critic
    calls = vllm_engine.stats.calls
    scores, tokens = Critic(vllm_engine, cfg).score(sample_items)
    assert vllm_engine.stats.calls == calls + 1
    for s in scores:
        assert s.score is None or (round(s.score * k, 6).is_integer() or s.problem)
        assert s.verdict == ("unknown" if s.score is None else "correct" if s.score >= 0.5 else "incorrect")
    assert tokens > len(sample_items) * k  # every vote's tokens count


# ---------------------------------------------------------------- the stage, CLI and Snakemake target

EVAL = {
    "limit": 6,
    "scorers": ["critic", "monte-carlo"],
    "variants": [
        {"name": "rationale-first", "scorer": "critic", "rationale_first": True, "max_tokens": 160},
        {"name": "vote-3", "scorer": "critic", "samples": 3, "temperature": 0.7},
    ],
    "group_by": ["category"],
}


def _write_config(tmp: Path) -> Path:
    config = tmp / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": "evaltest",
                "output_root": str(tmp / "outputs"),
                "eval": EVAL,
                "rollouts": {"m": 2, "max_tokens": 48},
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    config = _write_config(tmp)
    out = tmp / "stage"
    summary = run_eval_scorer(load(config), out)
    return config, out, summary, pq.read_table(out / "judgements.parquet")


@pytest.mark.vllm
def test_the_stage_judges_every_step_with_every_scorer(stage_run):
    _, out, summary, _ = stage_run
    names = ["critic", "monte-carlo", "rationale-first", "vote-3"]
    assert set(summary["scorers"]) == set(names) == set(summary["ranking"])
    assert summary["solutions"] == 6 and summary["steps"] == 12 and summary["rejected"] == 0
    table = pq.read_table(out / "judgements.parquet").to_pylist()
    assert len(table) == 12 * len(names)
    for name in names:
        rows = [r for r in table if r["scorer"] == name]
        r = summary["scorers"][name]
        assert [(x["solution_id"], x["step_index"]) for x in rows] == [
            (x["solution_id"], x["step_index"]) for x in table if x["scorer"] == "critic"
        ]
        assert r["unknown"] == sum(x["verdict"] == "unknown" for x in rows)
        assert sum(r["verdicts"].values()) == 12 and r["engine_requests"] > 0 and r["cache_hits"] == 0
        # Two solutions of add-2-3 and the two of add-5-1 open with the same step: judged once each.
        assert r["judged_steps"] == 10
        assert 0 <= r["processbench"]["f1"] <= 1 and r["processbench"]["erroneous"] == 3
        assert set(r["by_group"]["category"]) == {
            "correct",
            "arithmetic slip",
            "wrong operation",
            "wrong final answer",
        }
        graded = len({x["score"] for x in rows if x["score"] is not None}) > 2
        assert (r["sweep"] is not None) == graded
    critic_rows = [r for r in table if r["base_scorer"] == "critic"]
    assert all(r["rationale"] or r["verdict"] == "unknown" for r in critic_rows)
    mc = [r for r in table if r["scorer"] == "monte-carlo"]
    # Rolled out with m = 2 (first steps) or checked (steps with their own answer).
    assert all(r["score"] in (0.0, 0.5, 1.0) for r in mc)
    assert summary["scorers"]["monte-carlo"]["tokens"] > 0
    assert summary["scorers"]["vote-3"]["tokens"] > summary["scorers"]["critic"]["tokens"]
    labels = {(r["solution_id"], r["step_index"]): r["label"] for r in critic_rows}
    assert labels[("add-2-3-wrong-operation", 0)] is False and labels[("add-2-3-wrong-operation", 1)] is None
    page = (out / "index.html").read_text()
    assert "Threshold sweep" in page or all(r["sweep"] is None for r in summary["scorers"].values())
    assert "<h2 id='s-vote-3'>vote-3</h2>" in page and "\\boxed{6}" in page and "<script>" not in page


@pytest.mark.vllm
def test_the_cli_rerun_is_served_by_the_cache(stage_run):
    config, out, first, table = stage_run
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "eval-scorer", "--config", str(config), "--out-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["solutions"] == 6
    again = json.loads((out / "summary.json").read_text())
    for name, r in again["scorers"].items():
        assert (r["engine_requests"], r["engine_s"]) == (0, 0), name
        assert r["cache_hits"] > 0 and r["tokens"] == first["scorers"][name]["tokens"]
        assert r["processbench"] == first["scorers"][name]["processbench"]
    assert "Loading weights" not in proc.stderr  # the model was never loaded
    assert pq.read_table(out / "judgements.parquet").equals(table)


def test_cli_names_a_bad_mapping(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"eval": {"fields": {"steps": "solution"}}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "eval-scorer",
            "--config",
            str(config),
            "--out-dir",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "error: config field eval.fields.steps: column 'solution' is not in" in proc.stderr


@pytest.mark.vllm
def test_snakemake_eval_target(stage_run, tmp_path):
    config, out, _, _ = stage_run
    run = Path(yaml.safe_load(config.read_text())["output_root"]) / "evaltest"
    dry = snakemake("eval", "-n", "--configfile", str(config))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "eval_scorer" in dry.stdout
    # Not part of the default target.
    default = snakemake("--configfile", str(config), "-n")
    assert default.returncode == 0 and "eval_scorer" not in default.stdout
    # The real target, its cache seeded by the stage run: no model call, every output written.
    (run / "eval").mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "judgements.cache.sqlite", run / "eval/judgements.cache.sqlite")
    proc = snakemake("eval", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "eval/summary.json").read_text())
    assert all(r["engine_requests"] == 0 for r in summary["scorers"].values())
    for name in ("judgements.parquet", "rejects.parquet", "index.html"):
        assert (run / "eval" / name).is_file()
