"""Methods annotation (human notes expanded by an LLM behind the polish guard) and outcome (sampled
full solutions -> correct-vs-wrong preference pairs).

Scripted engines pin the attempts, the retries and the pairs down exactly; the embedded model runs
each method once for real.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.answers import AnswerChecker
from pipeline.config import ConfigError, load
from pipeline.engines import EnginePool
from pipeline.engines.base import Completion, EngineStats
from pipeline.formats.build import format_tables
from pipeline.formats.preference import outcome_pairs, preference_pairs
from pipeline.io.tables import PREFERENCE_SCHEMA, THOUGHT_SCHEMA, write_table
from pipeline.methods import annotation, method_module, outcome
from pipeline.polish.rounds import attempt_seed
from tests.fake_engine import SharedEngine
from trees.model import Node, Tree

ATTEMPT = "I count on from 2 three times: 3, 4, 5, 6, so 2 + 3 = 6."
CORRECTION = "Counting on three from 2 gives 3, 4, 5, so 2 + 3 = 5."
NOTES = "\n".join(
    [
        f"Attempt: {ATTEMPT}",
        "Reflection: I said four numbers after 2, not three.",
        "Fact: counting on adds one for each number said after the start.",
        f"Correction: {CORRECTION}",
        "Answer: 5",
    ]
)
# What a faithful expansion says: the attempt, a doubt, the correction, a verified answer.
FULL = f"{ATTEMPT}\n\nWait, I said four numbers after 2, so I counted one too many.\n\n{CORRECTION}\n\nThe answer is \\boxed{{5}}."
WITHOUT_CORRECTION = f"{ATTEMPT}\n\nWait, I counted one too many.\n\nSo the answer is \\boxed{{5}}."
SWAPPED = f"{CORRECTION}\n\nWait, that is not what I did first.\n\n{ATTEMPT}\n\nThe answer is \\boxed{{5}}."


def problem(pid: str, text: str, answer: str) -> dict:
    return {"problem_id": pid, "problem": text, "answer": answer, "source": "test", "meta": "{}"}


ADD = problem("add-2-3", "What is 2 + 3?", "5")
OTHER = problem("add-5-1", "What is 5 + 1?", "6")


def write_jsonl(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def user_turn(request) -> str:
    return [c for r, c in request.messages if r == "user"][-1]


class ScriptedEngine:
    """Answers each request with `answer(request, i)`; counts calls and keeps requests."""

    label = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.stats = EngineStats()
        self.requests = []

    def generate(self, requests):
        self.stats.calls += 1
        self.stats.requests += len(requests)
        self.requests.extend(requests)
        return [[Completion(self.answer(r, i), 7, "stop") for i in range(r.n)] for r in requests]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


def run_method(module, cfg, problems, engine, checker, tmp_path):
    with EnginePool(cfg.engines, tmp_path / "cache.sqlite", lambda settings: engine) as pool:
        return module.build(cfg, problems, pool, checker)


# --- annotation --------------------------------------------------------------------------------


def test_the_methods_are_registered_under_their_config_names():
    assert method_module("annotation") is annotation and method_module("outcome") is outcome


def test_an_expansion_that_drops_a_correction_is_retried_with_feedback(tmp_path, checker):
    # add-2-3's first expansion loses the correction, its retry keeps it; half-8's (matched by its
    # problem text, no id) always puts the correction first and runs out of attempts.
    source = write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {"id": "add-2-3", "problem": "What is 2 + 3?", "annotation": NOTES},
            {"problem": "  what is 2 +  3 ?", "annotation": NOTES},  # no id, text differs: another problem
            {"problem": "WHAT IS 5 +  1?", "annotation": NOTES},
        ],
    )

    def answer(request, i):
        if "5 + 1" in user_turn(request):
            return SWAPPED.replace("\\boxed{5}", "\\boxed{6}")
        return FULL if "rejected" in user_turn(request) else WITHOUT_CORRECTION

    engine = ScriptedEngine(answer)
    cfg = load(overrides={"annotation": {"source": source, "attempts": 3}})

    rows, stats = run_method(annotation, cfg, [ADD, OTHER], engine, checker, tmp_path)

    by_id = {r["thought_id"]: r for r in rows}
    fixed, stuck = by_id["add-2-3/annotation-0"], by_id["add-5-1/annotation-0"]
    assert (fixed["kind"], fixed["method"], fixed["correct"], fixed["text"]) == (
        "journey",
        "annotation",
        True,
        FULL,
    )
    assert (fixed["answer"], fixed["n_reflections"], fixed["n_steps"], fixed["engine_tokens"]) == (
        "5",
        1,
        4,
        14,
    )
    assert stuck["correct"] is False and stuck["engine_tokens"] == 21  # kept, marked, three attempts paid
    # One engine call per attempt, each expansion retried only while it fails, with the seed of its
    # attempt; the retry quotes the lost correction.
    assert engine.stats.calls == len(engine.requests) == 5
    asked = {
        t: [r for r in engine.requests if text in user_turn(r)]
        for t, text in (
            ("add-2-3/annotation-0", "What is 2 + 3?"),
            ("add-5-1/annotation-0", "What is 5 + 1?"),
        )
    }
    for t, requests in asked.items():
        assert [r.seed for r in requests] == [
            attempt_seed(cfg.seed, t, k) for k in range(1, len(requests) + 1)
        ]
    retry = user_turn(asked["add-2-3/annotation-0"][1])
    assert len(asked["add-2-3/annotation-0"]) == 2 and len(asked["add-5-1/annotation-0"]) == 3
    assert "Your last answer was rejected:" in retry and f'"{CORRECTION}"' in retry
    assert "changed the order" in user_turn(asked["add-5-1/annotation-0"][1])
    assert stats["attempts_made"] == {"1": 2, "2": 2, "3": 1}
    assert stats["passed_by_attempt"] == {"1": 0, "2": 1, "3": 0}
    assert stats["failed_checks"] == {"steps": 1, "order": 3}
    assert (stats["expansions"], stats["expansions_passed"], stats["guard_pass_rate"]) == (2, 1, 0.5)
    assert stats["problems_without_annotation"] == 0 and stats["annotation_rows_rejected"] == 0
    write_table(rows, THOUGHT_SCHEMA, tmp_path / "thoughts.parquet")  # the thoughts table takes them


def test_a_retry_that_copies_its_feedback_does_not_pass(tmp_path, checker):
    # The feedback quotes the lost correction and the answer: a copy of it would pass the other checks.
    source = write_jsonl(tmp_path / "notes.jsonl", [{"id": "add-2-3", "annotation": NOTES}])

    def answer(request, i):
        turn = user_turn(request)
        return turn[turn.index("Your last answer") :] if "rejected" in turn else WITHOUT_CORRECTION

    engine = ScriptedEngine(answer)
    cfg = load(overrides={"annotation": {"source": source, "attempts": 3}})

    rows, stats = run_method(annotation, cfg, [ADD], engine, checker, tmp_path)

    assert rows[0]["correct"] is False and stats["failed_checks"]["echo"] == 2
    assert "It repeated these instructions." in user_turn(engine.requests[2])


def test_a_problem_without_an_annotation_is_counted_not_an_error(tmp_path, checker):
    source = write_jsonl(tmp_path / "notes.jsonl", [{"id": "add-2-3", "problem": "", "annotation": NOTES}])
    engine = ScriptedEngine(lambda request, i: FULL)
    cfg = load(overrides={"annotation": {"source": source}})

    rows, stats = run_method(annotation, cfg, [ADD, OTHER], engine, checker, tmp_path)

    assert [r["problem_id"] for r in rows] == ["add-2-3"] and rows[0]["correct"] is True
    assert stats["problems_without_annotation"] == 1 and stats["problems_without_annotation_ids"] == [
        "add-5-1"
    ]
    assert len(engine.requests) == 1

    rows, stats = run_method(annotation, cfg, [OTHER], engine, checker, tmp_path)

    assert rows == [] and stats["problems_without_annotation"] == 1 and engine.stats.calls == 1  # no call


def test_bad_annotation_rows_are_reported_naming_the_field(tmp_path, checker):
    source = write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {"id": "add-2-3", "problem": "What is 2 + 3?"},  # no annotation at all
            {"id": "add-2-3", "annotation": "   "},
            {"id": "add-2-3", "annotation": "I added them and got 5."},  # no labels
            {"id": "add-2-3", "annotation": "Fact: 2 + 3 = 5.\nAnswer: 5"},  # nothing to expand
            {"annotation": NOTES},  # matches nothing
            {"id": "add-2-3", "annotation": NOTES},
        ],
    )
    engine = ScriptedEngine(lambda request, i: FULL)
    cfg = load(overrides={"annotation": {"source": source}})

    rows, stats = run_method(annotation, cfg, [ADD], engine, checker, tmp_path)

    assert len(rows) == 1 and rows[0]["correct"] is True  # the good row still expands
    rejects = stats["annotation_rejects"]
    assert [(r["row"], r["field"]) for r in rejects] == [
        (0, "annotation"),
        (1, "annotation"),
        (2, "annotation"),
        (3, "annotation"),
        (4, "id"),
    ]
    assert rejects[0]["reason"] == "empty or missing"
    assert rejects[2]["reason"].startswith("line 1 has no label (expected one of Attempt:, Reflection:")
    assert rejects[3]["reason"].startswith("no Attempt: or Correction: entry")
    assert (stats["annotation_rows_read"], stats["annotation_rejects_by_field"]) == (
        6,
        {"annotation": 4, "id": 1},
    )


def test_an_annotation_source_or_column_that_is_not_there_stops_with_the_field(tmp_path, checker):
    engine = ScriptedEngine(lambda request, i: FULL)
    missing = load(overrides={"annotation": {"source": str(tmp_path / "nope.jsonl")}})
    with pytest.raises(ConfigError, match=r"^config field annotation.source .*no such file"):
        run_method(annotation, missing, [ADD], engine, checker, tmp_path)
    source = write_jsonl(tmp_path / "notes.jsonl", [{"id": "add-2-3", "notes": NOTES}])
    renamed = load(overrides={"annotation": {"source": source}})
    with pytest.raises(ConfigError, match=r"^config field annotation.fields.annotation: column 'annotation'"):
        run_method(annotation, renamed, [ADD], engine, checker, tmp_path)
    with pytest.raises(ConfigError, match="config field annotation.engine: no engine named 'nope'"):
        load(overrides={"annotation": {"engine": "nope"}})


def test_the_shipped_annotations_parse_and_match_bundled_problems():
    from pipeline.methods.annotation_notes import match_notes, read_notes

    cfg = load()
    loaded = read_notes(cfg.annotation)
    problems = [json.loads(line) for line in open(cfg.problems.source)]
    matched = match_notes([{"problem_id": p["id"], "problem": p["problem"]} for p in problems], loaded.notes)
    assert loaded.rejects == [] and 5 <= len(loaded.notes) == len(matched) <= 8
    for notes in loaded.notes:  # each a wrong attempt, a reflection, a correction, facts, an answer
        labels = [e.label for e in notes.entries]
        assert labels[0] == "attempt" and {"reflection", "correction", "fact", "answer"} <= set(labels)
    assert cfg.annotation.engine == cfg.polish.engine and cfg.outcome.engine == cfg.policy.engine


# --- outcome -----------------------------------------------------------------------------------


def solutions(i: int) -> str:
    # add-2-3: samples 0-3 verify (two of them the same text), 4-7 do not; add-5-1: none verifies.
    if i < 4:
        return f"We add {min(i, 2)} things.\n\n2 + 3 = 5, so the answer is \\boxed{{5}}."
    return f"We add them.\n\n2 + 3 = {i + 3}, so the answer is \\boxed{{{i + 3}}}."


def test_outcome_pairs_are_correct_vs_wrong_at_most_k_without_duplicates(tmp_path, checker):
    engine = ScriptedEngine(lambda request, i: solutions(i))
    cfg = load(overrides={"outcome": {"samples": 8, "pairs_per_problem": 5}})

    rows, stats = run_method(outcome, cfg, [ADD, OTHER], engine, checker, tmp_path)

    assert engine.stats.calls == 1 and [r.n for r in engine.requests] == [8, 8]  # one call for the shard
    assert {(r["kind"], r["method"]) for r in rows} == {("solution", "outcome")} and len(rows) == 16
    assert [r["correct"] for r in rows if r["problem_id"] == "add-2-3"] == [True] * 4 + [False] * 4
    assert not any(r["correct"] for r in rows if r["problem_id"] == "add-5-1")  # "5" is wrong there
    assert (stats["solutions_correct"], stats["correct_share"]) == (4, 0.25)
    assert (stats["problems_with_correct_and_wrong"], stats["problems_all_wrong"]) == (1, 1)

    pairs = outcome_pairs(rows, cfg.seed, 5)

    # 3 distinct correct texts x 4 wrong = 12 candidates, 5 drawn; the all-wrong problem gives none.
    assert len(pairs) == 5 and {p["problem_id"] for p in pairs} == {"add-2-3"}
    assert len({(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}) == 5
    assert all(p["chosen_answer"] == "5" and p["rejected_answer"] != "5" for p in pairs)
    assert all(
        p["source"] == "outcome" and p["prompt"] == [{"role": "user", "content": ADD["problem"]}]
        for p in pairs
    )
    assert outcome_pairs(rows, cfg.seed, 5) == pairs  # deterministic by seed
    assert len(outcome_pairs(rows, cfg.seed, 50)) == 12
    assert outcome_pairs([r for r in rows if r["problem_id"] == "add-5-1"], cfg.seed, 5) == []


def test_the_preference_file_mixes_tree_and_outcome_pairs_with_their_source(tmp_path, checker):
    engine = ScriptedEngine(lambda request, i: solutions(i))
    cfg = load(
        overrides={"outcome": {"samples": 8, "pairs_per_problem": 2}, "export": {"formats": ["preference"]}}
    )
    rows, _ = run_method(outcome, cfg, [ADD], engine, checker, tmp_path)
    tree = Tree(
        "add-5-1",
        [
            Node("add-5-1", 0, -1, 0, OTHER["problem"]),
            Node("add-5-1", 1, 0, 1, "5 + 1 = 6, so \\boxed{6}.", True, "6", True),
            Node("add-5-1", 2, 0, 1, "5 + 1 = 7, so \\boxed{7}.", True, "7", False),
        ],
    )
    assert preference_pairs(tree, __import__("random").Random(0), 5)[0]["source"] == "tree"

    tables = format_tables(cfg, [tree], rows)

    pair_rows, schema = tables["preference.parquet"]
    write_table(pair_rows, schema, tmp_path / "preference.parquet")
    table = pq.read_table(tmp_path / "preference.parquet")
    assert table.schema == PREFERENCE_SCHEMA
    assert table.column("source").to_pylist() == ["tree", "outcome", "outcome"]
    assert table.column("chosen_leaf").to_pylist() == [1, None, None]


# --- the embedded model in vLLM ----------------------------------------------------------------


@pytest.fixture
def real(vllm_engine, tmp_path):
    """The module's engine behind a fresh pool per build; returns a runner and the opened engines."""
    opened: list[SharedEngine] = []

    def build(module, cfg, problems):
        pool = EnginePool(
            cfg.engines, tmp_path / "cache.sqlite", lambda settings: SharedEngine(vllm_engine, opened)
        )
        with pool, AnswerChecker(1, 5) as checker:
            return module.build(cfg, problems, pool, checker)

    return build, opened


def small(overrides: dict):
    return load(overrides=overrides)


def test_real_annotation_expansion_is_guarded_retried_and_cached(real):
    build, opened = real
    cfg = small({"annotation": {"attempts": 2, "max_tokens": 96}})

    rows, stats = build(annotation, cfg, [ADD, OTHER])

    (engine,) = opened
    assert [r["problem_id"] for r in rows] == ["add-2-3"]  # add-5-1 has no shipped annotation
    assert stats["problems_without_annotation_ids"] == ["add-5-1"]
    assert sum(stats["attempts_made"].values()) == len(engine.requests) <= 2
    assert all(r.max_tokens == 96 for r in engine.requests)
    for r in rows:
        assert (r["kind"], r["method"], r["n_reflections"]) == ("journey", "annotation", 1)
        assert r["text"] and 0 < r["engine_tokens"] <= 96 * 2
    assert stats["expansions_passed"] == sum(r["correct"] for r in rows)
    assert sum(stats["passed_by_attempt"].values()) == stats["expansions_passed"]
    for retry in engine.requests[1:]:  # a retry is told what failed
        assert "Your last answer was rejected:\n- " in user_turn(retry)

    again, _ = build(annotation, cfg, [ADD, OTHER])

    assert again == rows and len(opened) == 1  # every expansion came from the response cache


def test_real_outcome_samples_are_checked_and_paired(real, checker):
    build, opened = real
    cfg = small({"outcome": {"samples": 4, "max_tokens": 64}})

    rows, stats = build(outcome, cfg, [ADD, OTHER])

    assert len(rows) == 8 and len(opened[0].requests) == 2 and {r.n for r in opened[0].requests} == {4}
    assert all(0 < r["engine_tokens"] <= 64 for r in rows)
    answered = [r for r in rows if r["answer"] is not None]
    assert [r["correct"] for r in answered] == checker.check(
        [(r["reference"], r["answer"]) for r in answered]
    )
    assert stats["solutions_correct"] == sum(r["correct"] for r in rows)
    for pair in outcome_pairs(rows, cfg.seed, 5):
        chosen = next(r for r in rows if r["text"] == pair["chosen"][0]["content"])
        rejected = next(r for r in rows if r["text"] == pair["rejected"][0]["content"])
        assert chosen["correct"] and not rejected["correct"] and pair["source"] == "outcome"
