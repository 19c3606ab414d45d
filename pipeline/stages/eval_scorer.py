"""Scorer evaluation stage: judge every step prefix of step-labelled solutions with each configured
scorer (and each variant of one), and measure the judgements against the labels.

Writes judgements.parquet (one row per step per scorer), rejects.parquet, summary.json and a static
index.html. Each scorer sees every step of every solution in batches of eval.batch_size, through the
response cache beside judgements.parquet, so a rerun pays for nothing already answered.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.answers import AnswerChecker
from pipeline.config import SCORER_SECTION, Config, ConfigError
from pipeline.engines import EnginePool, Opener, cache_path, open_engine
from pipeline.engines.seeds import request_seed
from pipeline.eval.metrics import Judged, judged_figures, threshold_sweep
from pipeline.eval.page import eval_page
from pipeline.eval.readers import Solution, read_solutions
from pipeline.io.tables import write_json, write_table, write_text
from pipeline.scorers import make_scorer
from pipeline.scorers.base import Scorer, StepScore, StepToScore

log = logging.getLogger(__name__)

JUDGEMENT_FIELDS = [
    ("scorer", pa.string()),  # the evaluated name: a scorer, or a variant's name
    ("base_scorer", pa.string()),  # the registered scorer it runs
    ("solution_id", pa.string()),
    ("row", pa.int64()),  # the solution's row in the source
    ("step_index", pa.int64()),
    ("n_steps", pa.int64()),
    ("problem", pa.string()),
    ("step", pa.string()),
    ("label", pa.bool_()),  # true correct, false wrong, null unlabelled
    ("first_error", pa.int64()),  # the solution's first wrong step, -1 when none
    ("verdict", pa.string()),  # correct | incorrect | unknown
    ("score", pa.float64()),
    ("rationale", pa.string()),
    ("scorer_problem", pa.string()),  # why the scorer's output was not clean ("" when it was)
]
EVAL_REJECT_SCHEMA = pa.schema(
    [("row", pa.int64()), ("field", pa.string()), ("reason", pa.string()), ("raw", pa.string())]
)


@dataclass(frozen=True)
class Evaluated:
    name: str
    scorer: str  # registry name
    section: Any  # its config section, with a variant's overrides applied
    overrides: dict


def evaluated(cfg: Config) -> list[Evaluated]:
    """The configured scorers, then the variants, each with the config section it runs with."""
    out = [Evaluated(n, n, getattr(cfg, SCORER_SECTION[n]), {}) for n in cfg.eval.scorers]
    for v in cfg.eval.variants:
        section = dataclasses.replace(getattr(cfg, SCORER_SECTION[v.scorer]), **v.overrides)
        out.append(Evaluated(v.name, v.scorer, section, v.overrides))
    return out


def step_items(seed: int, solutions: list[Solution]) -> list[StepToScore]:
    """Every step with the steps before it, solution by solution."""
    return [
        StepToScore(
            sol.problem,
            sol.reference,
            tuple(sol.steps[:i]),
            step,
            seed=request_seed(seed + 1, sol.solution_id, i),
        )
        for sol in solutions
        for i, step in enumerate(sol.steps)
    ]


def judgement_schema(group_by: list[str]) -> pa.Schema:
    taken = {name for name, _ in JUDGEMENT_FIELDS}
    for name in group_by:
        if name in taken:
            raise ConfigError(
                f"config field eval.group_by: {name!r} is a judgements column; rename it in the data"
            )
    return pa.schema(JUDGEMENT_FIELDS + [(name, pa.string()) for name in group_by])


def _judge(scorer: Scorer, items: list[StepToScore], batch_size: int) -> tuple[list[StepScore], int, int]:
    """Scores in item order, tokens, and how many distinct steps were judged.

    A step that opens several solutions the same way is judged once: the same request twice in one
    batch can get two answers from vLLM's CPU kernels while the cache keeps one, so a rerun would
    not match the first run (and the second answer costs tokens for nothing)."""
    distinct: dict[tuple, StepToScore] = {}
    for item in items:
        distinct.setdefault(_step_key(item), item)
    todo = list(distinct.values())
    scores: list[StepScore] = []
    tokens = 0
    for start in range(0, len(todo), batch_size):
        batch_scores, batch_tokens = scorer.score(todo[start : start + batch_size])
        scores.extend(batch_scores)
        tokens += batch_tokens
    by_key = dict(zip(distinct, scores))
    return [by_key[_step_key(i)] for i in items], tokens, len(todo)


def _step_key(item: StepToScore) -> tuple:
    return (item.problem, item.reference, item.previous, item.step)


def run_eval_scorer(cfg: Config, out_dir: str | Path, opener: Opener = open_engine) -> dict:
    """Write out_dir/judgements.parquet, rejects.parquet, summary.json, index.html; return the summary."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    ec = cfg.eval
    schema = judgement_schema(ec.group_by)
    loaded = read_solutions(ec)
    write_table(loaded.rejects, EVAL_REJECT_SCHEMA, out_dir / "rejects.parquet")
    if loaded.rejects:
        log.warning("%d of %d rows rejected from %s", len(loaded.rejects), loaded.rows_read, ec.source)
    if not loaded.solutions:
        raise ValueError(
            f"no valid solutions in {ec.source}: {loaded.rows_read} rows read, {len(loaded.rejects)} "
            f"rejected (see {out_dir / 'rejects.parquet'})"
        )
    items = step_items(cfg.seed, loaded.solutions)
    judgements_path = out_dir / "judgements.parquet"
    rows: list[dict] = []
    results: dict[str, dict] = {}
    with (
        EnginePool(cfg.engines, cache_path(judgements_path), opener) as pool,
        AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
    ):
        for unit in evaluated(cfg):
            scorer = make_scorer(unit.scorer, cfg, pool, checker, unit.section)
            engine = unit.section.engine
            before = pool.stats([engine])[engine]
            began = time.perf_counter()
            scores, tokens, judged = _judge(scorer, items, ec.batch_size)
            seconds = time.perf_counter() - began
            after = pool.stats([engine])[engine]
            engine_s = after["engine_s"] - before["engine_s"]
            cost = {
                "judged_steps": judged,
                "tokens": tokens,
                "tokens_per_step": round(tokens / judged, 2),
                # Engine time, so the model's start-up (paid by whichever scorer runs first) and
                # answers served by the cache (0 s) do not count as judging time.
                "engine_s": round(engine_s, 3),
                "seconds_per_step": round(engine_s / judged, 4),
                "wall_s": round(seconds, 3),
                "engine_requests": after["requests"] - before["requests"],
                "cache_hits": after["cache_hits"] - before["cache_hits"],
            }
            rows.extend(_rows(unit, loaded.solutions, scores, ec.group_by))
            results[unit.name] = {
                "scorer": unit.scorer,
                "overrides": unit.overrides,
                **_figures(loaded.solutions, scores, ec.group_by, ec.thresholds),
                **cost,
            }
            log.info("%s: %d distinct steps judged in %.1f s", unit.name, judged, seconds)
    write_table(pa.Table.from_pylist(rows, schema=schema), schema, judgements_path)
    summary = {
        "source": ec.source,
        "layout": ec.layout,
        "rows_read": loaded.rows_read,
        "solutions": len(loaded.solutions),
        "rejected": len(loaded.rejects),
        "rejects_by_field": dict(Counter(r["field"] for r in loaded.rejects)),
        "erroneous_solutions": sum(s.first_error != -1 for s in loaded.solutions),
        "steps": len(items),
        "labelled_steps": sum(lab is not None for s in loaded.solutions for lab in s.labels),
        "ranking": _ranking(results),
        "scorers": results,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "index.html", eval_page(summary, rows))
    return summary


def _rows(
    unit: Evaluated, solutions: list[Solution], scores: list[StepScore], group_by: list[str]
) -> list[dict]:
    it = iter(scores)
    out = []
    for sol in solutions:
        for i, (step, label) in enumerate(zip(sol.steps, sol.labels)):
            sc = next(it)
            out.append(
                {
                    "scorer": unit.name,
                    "base_scorer": unit.scorer,
                    "solution_id": sol.solution_id,
                    "row": sol.row,
                    "step_index": i,
                    "n_steps": len(sol.steps),
                    "problem": sol.problem,
                    "step": step,
                    "label": label,
                    "first_error": sol.first_error,
                    "verdict": sc.verdict,
                    "score": sc.score,
                    "rationale": sc.rationale,
                    "scorer_problem": sc.problem,
                    **{name: sol.groups[name] for name in group_by},
                }
            )
    return out


def _judged(solutions: list[Solution], scores: list[StepScore]) -> list[Judged]:
    out, at = [], 0
    for sol in solutions:
        mine = scores[at : at + len(sol.steps)]
        at += len(sol.steps)
        out.append(Judged(sol.labels, [s.verdict == "incorrect" for s in mine], [s.score for s in mine]))
    return out


def _figures(solutions: list[Solution], scores: list[StepScore], group_by: list[str], thresholds) -> dict:
    judged = _judged(solutions, scores)
    by_group = {}
    for name in group_by:
        values = sorted({sol.groups[name] for sol in solutions})
        by_group[name] = {
            value: _compact([j for j, sol in zip(judged, solutions) if sol.groups[name] == value])
            for value in values
        }
    # A sweep says something only for graded scores; a verdict's 0/1 gives the same row at every threshold.
    graded = len({s.score for s in scores if s.score is not None}) > 2
    return {
        **judged_figures(judged),
        "verdicts": dict(Counter(s.verdict for s in scores)),
        "unknown": sum(s.verdict == "unknown" for s in scores),
        "problems": dict(Counter(s.problem for s in scores if s.problem)),
        "by_group": by_group,
        "sweep": threshold_sweep(judged, thresholds) if graded else None,
    }


def _compact(judged: list[Judged]) -> dict:
    fig = judged_figures(judged)
    pb, steps = fig["processbench"], fig["steps"]
    return {
        "solutions": len(judged),
        "processbench_f1": pb["f1"],
        "error_accuracy": pb["error_accuracy"],
        "correct_accuracy": pb["correct_accuracy"],
        "exact_match": pb["exact_match"],
        "step_f1": steps["f1"],
        "auroc": fig["auroc"],
    }


def _ranking(results: dict[str, dict]) -> list[str]:
    """Best first: ProcessBench F1, then step F1, then AUROC (a missing figure ranks last)."""

    def key(name: str) -> tuple:
        r = results[name]
        figures = (r["processbench"]["f1"], r["steps"]["f1"], r["auroc"])
        return tuple(-1.0 if f is None else f for f in figures)

    return sorted(results, key=key, reverse=True)
