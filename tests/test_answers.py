"""Answer checking as datasets write references: equivalent forms, plain-text notations, text
answers, references math-verify misreads, unboxed final answers, the LLM judge, and the problems
stage's report on references. A false "correct" is worse than a miss, so wrong answers get their
own matrix."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from pipeline.answers import AnswerChecker, extract_final_answer, read_references
from pipeline.answers.judge import AnswerJudge, JudgeItem
from pipeline.answers.reading import Verdict, read_reference, reference_kind
from pipeline.config import AnswerJudgeConfig, ConfigError, load
from pipeline.engines.base import Completion, EngineStats, Request
from pipeline.scorers.base import StepScore
from pipeline.search.builder import TreeBuilder, tree_stats
from pipeline.stages.problems import run_problems


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(1, 5) as c:
        yield c


# ---- references as datasets write them -----------------------------------------------------------

MATCHES = [
    ("C(10, 5), or equivalently 252", "252"),
    ("C(10, 5), or equivalently 252", "\\binom{10}{5}"),
    ("C(10, 5), or equivalently 252", "\\dbinom{10}{5}"),
    ("5/14, or approximately 35.7%", "\\frac{5}{14}"),
    ("5/14, or approximately 35.7%", "35.7\\%"),
    ("C(n+1, 2m+1)", "\\binom{n+1}{2m+1}"),
    ("\\binom{n+1}{2m+1}", "C(n+1, 2m+1)"),
    ("sum_(i=1)^n i^3, or equivalently (n(n+1)/2)^2", "\\frac{n^2(n+1)^2}{4}"),
    ("1/4, i.e., 25%", "0.25"),
    ("\\frac{1}{2} (i.e. 0.5)", "1/2"),
    ("ln 2", "\\ln 2"),
    ("2pi", "2\\pi"),
    ("6.", "6"),
    ("x = 3", "3"),
]


@pytest.mark.parametrize("reference, answer", MATCHES)
def test_an_answer_in_any_listed_form_or_notation_matches(checker, reference, answer):
    assert checker.verdicts([(reference, answer)]) == [Verdict(True, "math-verify")]


@pytest.mark.parametrize(
    "reference, answer",
    [("No", "no"), ("No", "\\text{No}"), ("No", "No."), ("yes", "Yes, there is one"), ("Alice", "alice")],
)
def test_text_answers_match_as_text_whatever_the_case(checker, reference, answer):
    assert checker.verdicts([(reference, answer)]) == [Verdict(True, "text")]


# Wrong answers, and answers math-verify would wrongly match (its reading of "No" is n*o, of the
# sum is 1): none may ever be correct.
WRONG = [
    ("C(10, 5), or equivalently 252", "251"),
    ("C(10, 5), or equivalently 252", "\\binom{10}{4}"),
    ("5/14, or approximately 35.7%", "5/13"),
    ("5/14, or approximately 35.7%", "0.36"),
    ("C(n+1, 2m+1)", "\\binom{n+1}{2m}"),
    ("C(n+1, 2m+1)", "\\binom{n}{2m+1}"),
    ("sum_(i=1)^n i^3, or equivalently (n(n+1)/2)^2", "1"),
    ("sum_(i=1)^n i^3", "1"),
    ("1", "sum_(i=1)^n i^3"),
    ("No", "n*o"),
    ("No", "n o"),
    ("No", "on"),
    ("No", "Yes"),
    ("No", "0"),
    ("Yes", "E s y"),
    ("Yes", "No, never"),
    ("True", "False"),
    ("Alice", "Bob"),
    ("Alice", "a l i c e"),
    ("Alice", "ecila"),
    ("Bob and Alice", "Bob"),
    ("7 (when n = 2)", "2"),
    ("10 \\choose 5", "5"),
    ("2ab", "2"),
    ("at least 7", "a t l e a s t 7"),
    ("n^2 + n + 1 for n \\ge 1", "1 f o r n + n^2 + n"),
    ("12:00", "12"),
    ("3.14159...", "3"),
    ("0", "none"),
    ("2", "No"),
    ("C(3, 4)", "0"),
]


def test_no_wrong_answer_is_ever_correct(checker):
    verdicts = checker.verdicts(WRONG)
    assert [v.correct for v in verdicts if v.correct] == []
    assert checker.check(WRONG) == [False] * len(WRONG)


def test_misread_references_are_undecided_with_the_reason(checker):
    (sum_, no, unreadable) = checker.verdicts(
        [("sum_(i=1)^n i^3", "1"), ("No", "n*o"), ("3.14159...", "3.14159")]
    )
    assert (sum_.checker, no.checker, unreadable.checker) == ("undecided",) * 3
    assert "is read as 1" in sum_.reason
    assert "not the text reference 'No'" in no.reason
    assert "not read by math-verify" in unreadable.reason


def test_a_faithful_form_decides_when_another_is_misread(checker):
    # The sum form is read as 1, but (n(n+1)/2)^2 is read faithfully and says 1 is wrong.
    ref = "sum_(i=1)^n i^3, or equivalently (n(n+1)/2)^2"
    assert checker.verdicts([(ref, "1")]) == [Verdict(False, "math-verify")]


def test_the_same_writing_matches_even_where_math_verify_misreads(checker):
    assert checker.verdicts([("7 (when n = 2)", "7 (when n=2)")]) == [Verdict(True, "text")]


def test_references_are_classified_by_kind():
    kinds = {
        ref: reference_kind(read_reference(ref, 5))
        for ref in ["C(10, 5), or equivalently 252", "No", "Alice and Bob", "sum_(i=1)^n i^3", "3.14159..."]
    }
    assert kinds == {
        "C(10, 5), or equivalently 252": "math",
        "No": "text",
        "Alice and Bob": "text",
        "sum_(i=1)^n i^3": "suspicious",
        "3.14159...": "unreadable",
    }


def test_references_are_read_in_a_worker_outside_the_main_thread():
    # math-verify's SIGALRM timeouts fail outside a main thread; a thread still gets real readings.
    got = []
    thread = threading.Thread(
        target=lambda: got.append(read_references(["C(10, 5), or equivalently 252"], 5))
    )
    thread.start()
    thread.join()
    assert [[r.kind for r in readings] for readings in got[0]] == [["math", "math"]]


# ---- unboxed final answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "step, answer",
    [
        ("x^2 + 1 is smallest at x = 0, so the minimum is 1", "1"),
        ("Therefore, x = 3.", "3"),
        ("Adding them, 5 + 2 = 7, so the answer is 7.", "7"),
        ("So the answer is $\\frac{5}{14}$.", "\\frac{5}{14}"),
        ("So the answer is No.", "No"),
        ("We get \\boxed{4}, so the answer is 5.", "4"),  # \boxed{} comes first
    ],
)
def test_unboxed_final_answers_are_read_when_enabled(step, answer):
    assert extract_final_answer(step, unboxed=True) == answer
    assert extract_final_answer(step, unboxed=False) == (answer if "boxed" in step else None)


@pytest.mark.parametrize(
    "step",
    [
        "So the answer is 7. Now we check it by substitution.",
        "Let x = 3 and y = 4.",
        "So a = 1, b = 2.",
        "So the sum is even.",
        "So the minimum is 1 when x = 0.",
        "If the answer is 7, then",
    ],
)
def test_no_answer_is_read_from_the_middle_or_from_prose(step):
    assert extract_final_answer(step, unboxed=True) is None


# ---- the trees stage with a scripted policy and judge -------------------------------------------

PROBLEMS = [
    {
        "problem_id": "binom",
        "problem": "How many 5-subsets has a 10-set?",
        "answer": "C(10, 5), or equivalently 252",
    },
    {"problem_id": "yesno", "problem": "Is 91 prime?", "answer": "No"},
    {"problem_id": "sum", "problem": "Sum the first n cubes.", "answer": "sum_(i=1)^n i^3"},
    {"problem_id": "min", "problem": "Minimum of x^2 + 1?", "answer": "1"},
]
FINAL_STEPS = {
    "How many 5-subsets has a 10-set?": [
        "So \\boxed{252}.",
        "So \\boxed{\\binom{10}{5}}.",
        "So \\boxed{251}.",
    ],
    "Is 91 prime?": ["91 = 7 * 13, so \\boxed{No}.", "So \\boxed{n*o}.", "So \\boxed{Yes}."],
    "Sum the first n cubes.": ["So \\boxed{1}.", "So \\boxed{\\frac{n^2(n+1)^2}{4}}."],
    "Minimum of x^2 + 1?": ["x^2 >= 0, so the minimum is 1", "So the minimum is 2"],
}


class ScriptedEngine:
    """Policy: each problem's final steps, one per sample, closing the turn when `ended`. Judge: the
    reply `judge_reply` makes from the request's user message."""

    label = "scripted"

    def __init__(
        self,
        judge_reply=lambda user: json.dumps({"equivalent": False, "rationale": "Differs."}),
        ended=True,
    ):
        self.stats = EngineStats()
        self.judge_reply = judge_reply
        self.ended = ended
        self.batches: list[list[Request]] = []

    def generate(self, requests):
        self.stats.calls += 1
        self.batches.append(list(requests))
        out = []
        for r in requests:
            if r.json_schema:
                out.append([Completion(self.judge_reply(r.messages[-1][1]), 7, "stop")])
            else:
                problem = r.messages[-2][1]
                out.append([Completion(s, 5, "stop", ended=self.ended) for s in FINAL_STEPS[problem][: r.n]])
        return out

    def close(self) -> None:
        pass


class KeepAll:
    name = "keep-all"
    rule = "verdict"

    def score(self, items):
        return [StepScore("correct", 1.0, "fine") for _ in items], 0


def build(checker, *, unboxed=False, judge_engine=None, policy=None, depth=1):
    cfg = load(overrides={"policy": {"width": 3, "max_depth": depth}, "answer_check": {"unboxed": unboxed}})
    judge = AnswerJudge(judge_engine, AnswerJudgeConfig(engine="local")) if judge_engine else None
    builder = TreeBuilder(cfg, policy or ScriptedEngine(), KeepAll(), checker, judge=judge)
    nodes = builder.build(PROBLEMS)
    return {(n.problem_id, n.depth, n.step): n for n in nodes if not n.is_root}, tree_stats(nodes), judge


def test_each_terminal_node_records_what_decided_its_answer(checker):
    nodes, stats, _ = build(checker)
    decided = {key: (n.answer_correct, n.answer_checker) for key, n in nodes.items()}
    assert decided == {
        ("binom", 1, "So \\boxed{252}."): (True, "math-verify"),
        ("binom", 1, "So \\boxed{\\binom{10}{5}}."): (True, "math-verify"),
        ("binom", 1, "So \\boxed{251}."): (False, "math-verify"),
        ("yesno", 1, "91 = 7 * 13, so \\boxed{No}."): (True, "text"),
        ("yesno", 1, "So \\boxed{n*o}."): (False, "undecided"),
        ("yesno", 1, "So \\boxed{Yes}."): (False, "text"),
        ("sum", 1, "So \\boxed{1}."): (False, "undecided"),
        ("sum", 1, "So \\boxed{\\frac{n^2(n+1)^2}{4}}."): (False, "undecided"),
        ("min", 1, "x^2 >= 0, so the minimum is 1"): (False, "no answer"),
        ("min", 1, "So the minimum is 2"): (False, "no answer"),
    }
    reason = nodes[("sum", 1, "So \\boxed{1}.")].annotations
    assert reason[0]["scorer"] == "answer-check" and "is read as 1" in reason[0]["rationale"]
    assert stats["answer_checkers"] == {"math-verify": 3, "text": 2, "undecided": 3, "no answer": 2}


def test_an_unboxed_answer_before_the_end_of_a_solution_is_no_answer(checker):
    nodes, _, _ = build(checker, unboxed=True, policy=ScriptedEngine(ended=False), depth=2)
    middle = nodes[("min", 1, "x^2 >= 0, so the minimum is 1")]
    assert (middle.answer, middle.is_terminal) == (None, False)
    last = nodes[("min", 2, "x^2 >= 0, so the minimum is 1")]  # max depth ends the solution
    assert (last.answer, last.answer_correct) == ("1", True)


def test_unboxed_answers_end_a_solution_when_enabled(checker):
    nodes, stats, _ = build(checker, unboxed=True)
    assert nodes[("min", 1, "x^2 >= 0, so the minimum is 1")].answer == "1"
    assert nodes[("min", 1, "x^2 >= 0, so the minimum is 1")].answer_correct is True
    assert nodes[("min", 1, "So the minimum is 2")].answer_correct is False
    assert "no answer" not in stats["answer_checkers"]


def test_the_judge_decides_only_undecided_answers_in_one_call_per_sibling_group(checker):
    engine = ScriptedEngine(
        lambda user: json.dumps({"equivalent": "n^2(n+1)^2" in user, "rationale": "Checked the closed form."})
    )
    nodes, stats, judge = build(checker, judge_engine=engine)
    # The three undecided answers: one of "yesno"'s children, two of "sum"'s.
    assert sorted(len(b) for b in engine.batches) == [1, 2]
    sums = next(b for b in engine.batches if len(b) == 2)
    assert "Reference answer: sum_(i=1)^n i^3" in sums[-1].messages[-1][1]
    closed_form = nodes[("sum", 1, "So \\boxed{\\frac{n^2(n+1)^2}{4}}.")]
    assert (closed_form.answer_correct, closed_form.answer_checker) == (True, "judge")
    assert closed_form.annotations[-1]["rationale"] == "Checked the closed form."
    assert nodes[("sum", 1, "So \\boxed{1}.")].answer_checker == "judge"
    assert nodes[("binom", 1, "So \\boxed{252}.")].answer_checker == "math-verify"
    assert stats["answer_checkers"]["judge"] == 3
    assert judge.stats() == {"calls": 2, "requests": 3, "tokens": 21, "problems": {}}


def test_a_judge_reply_that_is_not_its_json_leaves_the_answer_undecided(checker):
    nodes, _, judge = build(checker, judge_engine=ScriptedEngine(lambda user: "They look the same to me."))
    node = nodes[("sum", 1, "So \\boxed{1}.")]
    assert (node.answer_correct, node.answer_checker) == (False, "undecided")
    assert node.annotations[-1]["rationale"].endswith("judge reply is not valid JSON")
    assert judge.stats()["problems"] == {"judge reply is not valid JSON": 3}


def test_the_judge_runs_on_the_real_engine(checker, vllm_engine):
    judge = AnswerJudge(vllm_engine, AnswerJudgeConfig(engine="local", max_tokens=48))
    items = [
        JudgeItem("Is 91 prime?", "No", "n*o"),
        JudgeItem("Sum the first n cubes.", "sum_(i=1)^n i^3", "1"),
    ]
    verdicts = judge.settle(items, checker.verdicts([(i.reference, i.answer) for i in items]))
    for v in verdicts:
        assert v.checker in ("judge", "undecided")
        assert isinstance(v.correct, bool) if v.checker == "judge" else (v.correct is None and v.reason)
    assert judge.stats()["calls"] == 1 and judge.stats()["requests"] == 2


# ---- config and the problems stage ---------------------------------------------------------------


def test_a_judge_on_an_unknown_engine_is_a_config_error():
    with pytest.raises(ConfigError, match="answer_check.judge.engine: no engine named 'gpt'"):
        load(overrides={"answer_check": {"judge": {"engine": "gpt"}}})


def test_the_problems_stage_reports_references_it_cannot_trust(tmp_path, caplog):
    rows = [
        {"id": "binom", "problem": "p1", "answer": "C(10, 5), or equivalently 252"},
        {"id": "pct", "problem": "p2", "answer": "5/14, or approximately 35.7%"},
        {"id": "cubes", "problem": "p3", "answer": "sum_(i=1)^n i^3"},
        {"id": "prime", "problem": "p4", "answer": "No"},
        {"id": "pi", "problem": "p5", "answer": "3.14159..."},
        {"id": "seven", "problem": "p6", "answer": 7},
    ]
    source = tmp_path / "refs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.problems"):
        stats = run_problems(load(overrides={"problems": {"source": str(source)}}), tmp_path / "out")
    assert stats["answers"] == {
        "kinds": {"math": 3, "text": 1, "suspicious": 1, "unreadable": 1},
        "with_equivalent_forms": 2,
        "unreadable_ids": ["pi"],
        "suspicious_ids": ["cubes"],
    }
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot read (first ids: pi)" in warnings and "misreads (first ids: cubes)" in warnings
