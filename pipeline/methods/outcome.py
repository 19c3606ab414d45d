"""Method outcome (seed 003's DPO data): N complete solutions per problem, each checked.

One engine call for the whole shard (one request per problem, n = outcome.samples). The rows are
kind `solution`: not long thoughts, only the material of the export's outcome-level preference
pairs (a verified solution against a wrong one, pipeline/formats/preference.py).
"""

from __future__ import annotations

import time

from pipeline.answers import AnswerChecker, extract_final_answer
from pipeline.config import Config
from pipeline.engines import EnginePool, Request
from pipeline.engines.seeds import request_seed
from pipeline.io.tables import ThoughtRow
from pipeline.prompts import PolicyPrompt

READS = "problems"  # built from the shard's problems, through the engines


def _request(cfg: Config, problem: dict) -> Request:
    o, delimiter = cfg.outcome, cfg.policy.step_delimiter
    # The policy prompt's shape without its partial assistant turn: the model answers a new turn
    # with a whole solution, which every OpenAI-compatible server accepts.
    messages = PolicyPrompt(o.prompt).messages(problem["problem"], [], delimiter)[:-1]
    return Request.chat(
        messages,
        n=o.samples,
        max_tokens=o.max_tokens,
        temperature=o.temperature,
        top_p=o.top_p,
        seed=request_seed(cfg.seed, "outcome", problem["problem_id"]),
    )


def build(
    cfg: Config, problems: list[dict], pool: EnginePool, checker: AnswerChecker
) -> tuple[list[dict], dict]:
    """outcome.samples solution rows per problem, `correct` when the final answer verifies."""
    start = time.perf_counter()
    o = cfg.outcome
    engine = pool.get(o.engine)
    outs = engine.generate([_request(cfg, p) for p in problems]) if problems else []
    delimiter = cfg.policy.step_delimiter
    rows, failed = [], 0
    for p, completions in zip(problems, outs):
        for i, comp in enumerate(completions):
            if comp.finish_reason == "error":  # no solution at all: neither chosen nor rejected
                failed += 1
                continue
            text = comp.text.strip()
            steps = [s.strip() for s in text.split(delimiter) if s.strip()]
            row = ThoughtRow.of(
                p,
                thought_id=f"{p['problem_id']}/outcome-{i}",
                kind="solution",
                text=text,
                steps=steps,
                answer=extract_final_answer(text, cfg.answer_check.unboxed),
                seed=cfg.seed,
                method="outcome",
                correct=False,
                engine_tokens=comp.tokens,
            )
            rows.append(row.as_row())
    answered = [r for r in rows if r["answer"] is not None]
    for r, ok in zip(answered, checker.check([(r["reference"], r["answer"]) for r in answered])):
        r["correct"] = ok
    correct = sum(r["correct"] for r in rows)
    by_problem: dict[str, list[bool]] = {p["problem_id"]: [] for p in problems}
    for r in rows:  # one pass: a shard holds problems x samples rows
        by_problem[r["problem_id"]].append(r["correct"])
    stats = {
        "solutions": len(rows),
        "solutions_correct": correct,
        "solutions_without_answer": len(rows) - len(answered),
        "samples_failed": failed,
        "correct_share": round(correct / len(rows), 4) if rows else None,
        "problems_with_correct_and_wrong": sum(any(v) and not all(v) for v in by_problem.values()),
        "problems_all_correct": sum(bool(v) and all(v) for v in by_problem.values()),
        "problems_all_wrong": sum(not any(v) for v in by_problem.values()),
        "engine_tokens": sum(r["engine_tokens"] for r in rows),
        "engines": pool.stats([o.engine]),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    return rows, stats
