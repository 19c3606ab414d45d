"""Polish stage: the shard's journeys through guarded rewriting (pipeline/polish/rounds.py); every
other row passes through untouched."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pipeline.answers import AnswerChecker
from pipeline.config import Config
from pipeline.engines import EnginePool, Opener, cache_path, open_engine
from pipeline.io.tables import POLISHED_SCHEMA, THOUGHT_SCHEMA, read_table, write_stats, write_table
from pipeline.polish.budget import TokenCounter, token_budget
from pipeline.polish.rounds import Journey, Rounds, attempt_stats, polished_row, unpolished_row


def run_polish(
    cfg: Config, thoughts_path: str | Path, out_path: str | Path, opener: Opener = open_engine
) -> dict:
    start = time.perf_counter()
    rows = read_table(thoughts_path, THOUGHT_SCHEMA).to_pylist()
    p = cfg.polish
    # Only journeys export will train on: solution rows (outcome samples) and journeys whose answer
    # does not verify (correct False) pass through untouched.
    todo = [r for r in rows if r["kind"] == "journey" and r["correct"] is not False] if p.enabled else []
    out = {r["thought_id"]: unpolished_row(r, "passthrough") for r in rows}
    journeys: list[Journey] = []
    engine_stats = {}
    gave_up = 0
    if todo:
        counter = TokenCounter(cfg.engines[p.engine])
        for r in todo:
            raw_tokens = counter.count(r["text"])
            budget = token_budget(raw_tokens, p.budget_factor, p.budget_margin, p.max_tokens)
            journeys.append(Journey(r, raw_tokens, budget))
        with (
            EnginePool(cfg.engines, cache_path(out_path), opener) as pool,
            AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
        ):
            engine = pool.get(p.engine)
            rounds = Rounds(cfg.seed, p, journeys, engine, checker)
            rounds.run()
            gave_up = rounds.gave_up
            engine_stats = pool.stats([p.engine])
        for j in journeys:
            out[j.row["thought_id"]] = polished_row(j, engine.label)
    result_rows = list(out.values())
    write_table(result_rows, POLISHED_SCHEMA, out_path)
    statuses = Counter(r["polish_status"] for r in result_rows)
    polished = statuses.get("polished", 0)
    stats = {
        "thoughts": len(result_rows),
        "polish_attempted": len(todo),
        "polished": polished,
        "fallback": statuses.get("fallback", 0),
        "passthrough": statuses.get("passthrough", 0),
        "guard_pass_rate": round(polished / len(todo), 4) if todo else None,
        **attempt_stats(journeys),
        "polish_gave_up": gave_up,
        "polish_tokens": sum(r["polish_tokens"] for r in result_rows),
        "engines": engine_stats,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_stats(out_path, stats)
    return stats
