"""Reference fields that hold a worked solution, in the layouts the Hub stores them: GSM8K's final
`#### answer` line, MATH's `solution` with its \\boxed{} answer. The final answer is read out, the
whole field is kept in meta, and a field that gives no single final answer is a reject, never a
guess; plain answers (the bundled sample) read exactly as before."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.answers import AnswerChecker
from pipeline.config import PROJECT_ROOT, ConfigError, load
from pipeline.stages.problems import run_problems
from tests.snakemake_run import shard_rows

SAMPLE = PROJECT_ROOT / "pipeline" / "data" / "sample_problems.jsonl"

NATALIA = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
    "#### 72"
)
GSM8K = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": NATALIA,
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
        "babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "A farm ships 250 crates of 4 melons each. How many melons does it ship?",
        "answer": "It ships 250 * 4 = <<250*4=1000>>1000 melons.\n#### 1,000",
    },
]
GSM8K_FIELDS = {"problem": "question", "answer": "answer", "id": None}

HALF = (
    "The probability of heads on one toss is $\\frac{1}{2}$, and the tosses are independent, so "
    "the probability that the second toss is heads is $\\boxed{\\frac{1}{2}}$."
)
MATH = [
    {"problem": "A fair coin is tossed twice. What is the probability that the second toss is heads?",
     "solution": HALF, "level": "Level 1", "type": "Counting & Probability"},
    {"problem": "What is $\\sqrt{49} + 3^2$?",
     "solution": "We have $\\sqrt{49} = 7$ and $3^2 = 9$, so the sum is $7 + 9 = \\boxed{16}$.",
     "level": "Level 1", "type": "Prealgebra"},
    {"problem": "Find $x$ if $2x = 10$.",
     "solution": "Dividing by 2 gives $x = \\boxed{5}$. Check: $2 \\cdot \\boxed{5} = 10$.",
     "level": "Level 1", "type": "Algebra"},
]  # fmt: skip
MATH_FIELDS = {"problem": "problem", "answer": "solution", "id": None}


def config(source, fields, **problems):
    return load(overrides={"problems": {"source": str(source), "fields": fields, **problems}})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def rejects(out_dir) -> list[dict]:
    return pq.read_table(out_dir / "rejects.parquet").to_pylist()


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


# ---- GSM8K: the answer after the final #### line --------------------------------------------------


def test_a_gsm8k_answer_is_the_number_after_its_final_marker(tmp_path):
    source = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)

    stats = run_problems(config(source, GSM8K_FIELDS), tmp_path / "out")

    rows = shard_rows(tmp_path / "out")
    assert [r["answer"] for r in rows] == ["72", "10", "1000"]
    # The worked solution is kept whole, under its own column's name.
    assert [json.loads(r["meta"]) for r in rows] == [{"answer": g["answer"]} for g in GSM8K]
    # Numbers from the middle of the solution are never the answer.
    assert not {"24", "48", "0.2", "250"} & {r["answer"] for r in rows}
    assert stats["reference_read"] == {"plain": 0, "gsm8k": 3, "boxed": 0}
    assert stats["answers"]["kinds"]["math"] == 3


def test_a_gsm8k_reference_checks_its_final_answer_not_a_middle_one(tmp_path, checker):
    source = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    run_problems(config(source, GSM8K_FIELDS), tmp_path / "out")
    natalia, _, melons = (r["answer"] for r in shard_rows(tmp_path / "out"))

    verdicts = checker.verdicts(
        [
            (natalia, "\\boxed{72}"),
            (natalia, "\\boxed{24}"),
            (melons, "1000"),
            (melons, "1,000"),
            (melons, "100"),
        ]
    )
    assert [v.correct for v in verdicts] == [True, False, True, True, False]


@pytest.mark.parametrize(
    "field, kind",
    [
        ("She has 48 clips. Then 72 in all.\n#### 72\nThat is the answer.", "answer: #### not at the end"),
        ("She has 48 clips, so 72 in all.", "answer: no #### answer line"),
        ("She has 48 clips.\n####", "answer: empty #### answer"),
    ],
    ids=["marker-not-last", "no-marker", "empty-marker"],
)
def test_a_gsm8k_field_without_a_final_marker_line_is_rejected(tmp_path, field, kind):
    rows = [GSM8K[0], {"question": "How many clips?", "answer": field}]
    source = write_jsonl(tmp_path / "gsm8k.jsonl", rows)

    stats = run_problems(config(source, GSM8K_FIELDS, answer_format="gsm8k"), tmp_path / "out")

    assert [r["answer"] for r in shard_rows(tmp_path / "out")] == ["72"]
    (reject,) = rejects(tmp_path / "out")
    assert (reject["row"], reject["field"]) == (1, "answer")
    assert "####" in reject["reason"]
    assert stats["rejects_by_reason"] == {kind: 1}


def test_thousands_separators_are_dropped_only_where_unambiguous(tmp_path):
    answers = ["#### 12,345", "#### -1,000.5", "#### 1,2", "#### (1,2)", "#### 0,5"]
    rows = [{"question": f"Q{i}?", "answer": f"Work.\n{a}"} for i, a in enumerate(answers)]
    source = write_jsonl(tmp_path / "gsm8k.jsonl", rows)

    run_problems(config(source, GSM8K_FIELDS), tmp_path / "out")

    assert [r["answer"] for r in shard_rows(tmp_path / "out")] == ["12345", "-1000.5", "1,2", "(1,2)", "0,5"]


# ---- MATH: a worked solution's \boxed{} -----------------------------------------------------------


def test_a_math_solution_is_read_for_its_box_and_kept_whole(tmp_path):
    source = write_parquet(tmp_path / "math.parquet", MATH)

    stats = run_problems(config(source, MATH_FIELDS), tmp_path / "out")

    rows = shard_rows(tmp_path / "out")
    # Nested braces are the box's content; the same answer boxed twice is one answer.
    assert [r["answer"] for r in rows] == ["\\frac{1}{2}", "16", "5"]
    assert json.loads(rows[0]["meta"]) == {
        "solution": HALF,
        "level": "Level 1",
        "type": "Counting & Probability",
    }
    assert stats["reference_read"] == {"plain": 0, "gsm8k": 0, "boxed": 3}


def test_boxes_that_give_different_answers_are_a_reject_naming_the_row(tmp_path):
    two = "If $x = 2$ the area is $\\boxed{2}$; the other root gives $\\boxed{3}$."
    rows = [*MATH[:2], {**MATH[2], "solution": two}]
    source = write_parquet(tmp_path / "math.parquet", rows)

    stats = run_problems(config(source, MATH_FIELDS), tmp_path / "out")

    assert [r["answer"] for r in shard_rows(tmp_path / "out")] == ["\\frac{1}{2}", "16"]
    (reject,) = rejects(tmp_path / "out")
    assert (reject["row"], reject["field"]) == (2, "answer")
    assert reject["reason"] == "its boxes give different answers: \\boxed{2}, \\boxed{3}"
    assert reject["problem_id"] is not None and json.loads(reject["raw"])["solution"] == two
    assert stats["rejects_by_reason"] == {"answer: boxes disagree": 1}


@pytest.mark.parametrize(
    "answer_format, layout, kind",
    [("gsm8k", "math", "answer: no #### answer line"), ("boxed", "gsm8k", "answer: no box")],
)
def test_an_explicit_format_the_rows_do_not_have_rejects_every_row(tmp_path, answer_format, layout, kind):
    if layout == "math":
        source, fields, rows = write_parquet(tmp_path / "math.parquet", MATH), MATH_FIELDS, MATH
    else:
        source, fields, rows = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K), GSM8K_FIELDS, GSM8K

    with pytest.raises(ValueError, match="no valid problems"):
        run_problems(config(source, fields, answer_format=answer_format), tmp_path / "out")

    got = rejects(tmp_path / "out")
    assert [(r["row"], r["field"]) for r in got] == [(i, "answer") for i in range(len(rows))]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["rejects_by_reason"] == {kind: len(rows)}


def test_boxed_reads_a_lone_box_and_plain_keeps_the_field_as_it_is(tmp_path):
    rows = [
        {"problem": "What is 2 + 3?", "solution": "\\boxed{5}"},
        {"problem": "Half of 1?", "solution": HALF},
    ]
    source = write_jsonl(tmp_path / "p.jsonl", rows)

    run_problems(config(source, MATH_FIELDS, answer_format="boxed"), tmp_path / "boxed")
    run_problems(config(source, MATH_FIELDS, answer_format="plain"), tmp_path / "plain")

    assert [r["answer"] for r in shard_rows(tmp_path / "boxed")] == ["5", "\\frac{1}{2}"]
    assert [r["answer"] for r in shard_rows(tmp_path / "plain")] == ["\\boxed{5}", HALF]
    assert [r["meta"] for r in shard_rows(tmp_path / "plain")] == ["{}", "{}"]


# ---- auto: whichever the field shows ---------------------------------------------------------------


def test_auto_leaves_the_bundled_sample_exactly_as_before(tmp_path):
    stats = run_problems(load(overrides={"problems": {"source": str(SAMPLE)}}), tmp_path / "auto")
    run_problems(
        load(overrides={"problems": {"source": str(SAMPLE), "answer_format": "plain"}}), tmp_path / "plain"
    )

    sample = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rows = shard_rows(tmp_path / "auto")
    assert [(r["problem_id"], r["answer"], r["meta"]) for r in rows] == [
        (s["id"], s["answer"], "{}") for s in sample
    ]
    assert rows == shard_rows(tmp_path / "plain")
    assert stats["reference_read"] == {"plain": 16, "gsm8k": 0, "boxed": 0}


def test_auto_reads_each_row_its_way_and_counts_them(tmp_path, caplog):
    rows = [
        {"problem": GSM8K[0]["question"], "solution": NATALIA},
        {"problem": MATH[0]["problem"], "solution": HALF},
        {"problem": "What is 2 + 3?", "solution": "5"},
        {"problem": "What is 3 + 3?", "solution": "$\\boxed{6}$"},
        {"problem": "Is 91 prime?", "solution": "No"},
        {"problem": "C(10, 5)?", "solution": "C(10, 5), or equivalently 252"},
        {
            "problem": "How many apples?",
            "solution": "She has 3 bags of 4 apples, so 12. Then 5 more makes 17.",
        },
    ]
    source = write_jsonl(tmp_path / "mixed.jsonl", rows)

    with caplog.at_level(logging.INFO, logger="pipeline.stages.problems"):
        stats = run_problems(config(source, MATH_FIELDS), tmp_path / "out")

    assert [r["answer"] for r in shard_rows(tmp_path / "out")] == [
        "72", "\\frac{1}{2}", "5", "$\\boxed{6}$", "No", "C(10, 5), or equivalently 252",
    ]  # fmt: skip
    assert stats["reference_read"] == {"plain": 4, "gsm8k": 1, "boxed": 1}
    # A worked solution that marks no final answer is never handed to math-verify.
    (reject,) = rejects(tmp_path / "out")
    assert (reject["row"], reject["field"]) == (6, "answer")
    assert "no final answer marked" in reject["reason"] and "answer_format: plain" in reject["reason"]
    assert stats["rejects_by_reason"] == {"answer: worked solution without a final answer": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "references: 1 read after ####, 1 from the last \\boxed{}, 4 as given, "
        "1 rejected as giving no single final answer" in messages
    )


def test_a_final_marker_and_a_box_that_disagree_are_a_reject(tmp_path):
    rows = [{"question": "Q?", "answer": "So far \\boxed{24} clips.\n#### 72"}, GSM8K[1]]
    source = write_jsonl(tmp_path / "gsm8k.jsonl", rows)

    stats = run_problems(config(source, GSM8K_FIELDS), tmp_path / "out")

    (reject,) = rejects(tmp_path / "out")
    assert reject["row"] == 0 and "\\boxed{24}" in reject["reason"] and "'72'" in reject["reason"]
    assert stats["rejects_by_reason"] == {"answer: #### and boxes disagree": 1}


def test_answer_format_is_checked_by_the_schema():
    assert load().problems.answer_format == "auto"
    with pytest.raises(ConfigError, match="problems.answer_format: 'latex' is not one of"):
        load(overrides={"problems": {"answer_format": "latex"}})
