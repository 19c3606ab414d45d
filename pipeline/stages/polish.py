"""Polish stage: an LLM rewrites each journey into fluent prose; the guard keeps it or falls back."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pipeline.answers import AnswerChecker, extract_boxed
from pipeline.config import Config
from pipeline.engines import EnginePool, Request, cache_path
from pipeline.polish_guard import guard_checks
from pipeline.prompts import PolishPrompt, load_yaml
from pipeline.tables import POLISHED_SCHEMA, THOUGHT_SCHEMA, read_table, write_stats, write_table


def _unpolished(row: dict, status: str) -> dict:
    return {
        **row,
        "raw_text": row["text"],
        "polished_text": "",
        "polish_status": status,
        "polish_failed": [],
        "polish_tokens": 0,
        "polish_model": "",
    }


def run_polish(cfg: Config, thoughts_path: str | Path, out_path: str | Path) -> dict:
    start = time.perf_counter()
    rows = read_table(thoughts_path, THOUGHT_SCHEMA).to_pylist()
    p = cfg.polish
    todo = [r for r in rows if r["kind"] == "journey"] if p.enabled else []
    out = {r["thought_id"]: _unpolished(r, "passthrough") for r in rows}
    failed_checks: Counter = Counter()
    engine_stats = {}
    if todo:
        prompt = PolishPrompt(p.prompt)
        markers = load_yaml(p.prompt).get("backtrack_markers", [])
        with (
            EnginePool(cfg.engines, cache_path(out_path)) as pool,
            AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
        ):
            engine = pool.get(p.engine)
            requests = [
                Request.chat(
                    prompt.messages(r["problem"], r["text"]),
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    repetition_penalty=p.repetition_penalty,
                    seed=cfg.seed,
                )
                for r in todo
            ]
            completions = [c[0] for c in engine.generate(requests)]
            answers = [extract_boxed(c.text) for c in completions]
            checkable = [(r["reference"], a) for r, a in zip(todo, answers) if a is not None]
            verified = iter(checker.check(checkable))
            engine_stats = pool.stats([p.engine])
        for row, comp, answer in zip(todo, completions, answers):
            verifies = None if answer is None else next(verified)
            result = guard_checks(
                comp.text,
                row["steps"],
                row["n_backtracks"],
                verifies,
                markers=markers,
                min_similarity=p.min_step_similarity,
            )
            failed = list(result.failed)
            if comp.finish_reason != "stop":
                failed.insert(0, f"polisher: finish_reason {comp.finish_reason} {comp.error}".strip())
            status = "fallback" if failed else "polished"
            out[row["thought_id"]] = {
                **_unpolished(row, status),
                "text": row["text"] if failed else comp.text.strip(),
                "polished_text": comp.text,
                "polish_failed": failed,
                "polish_tokens": comp.tokens,
                "polish_model": engine.label,
            }
            failed_checks.update(f.split(":")[0] for f in failed)
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
        "failed_checks": dict(failed_checks),
        "polish_tokens": sum(r["polish_tokens"] for r in result_rows),
        "engines": engine_stats,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_stats(out_path, stats)
    return stats
