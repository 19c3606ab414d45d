"""Model evaluation stage (the paper's last step): each model answers the held-out benchmark, greedy
once and eval_model.samples times sampled, every answer checked by the project's answer checker.

One job per model writes outputs/<model>.parquet (every output, with its check) and a stats sidecar,
through a response cache keyed by the checkpoint's files, so a rerun pays for nothing and a retrained
checkpoint is asked again. The summary step reads them all: summary.json and the report pages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.answers import NO_ANSWER, AnswerChecker, extract_final_answer, verdicts_async
from pipeline.answers.judge import AnswerJudge, JudgeItem
from pipeline.config import Config
from pipeline.engines import EnginePool, Opener, Request, cache_path, open_engine
from pipeline.engines.base import generate_async
from pipeline.engines.cache import CachedEngine
from pipeline.engines.seeds import request_seed
from pipeline.io.tables import PROBLEM_SCHEMA, read_table, write_json, write_stats, write_table, write_text
from pipeline.model_eval.models import ModelToEval, evaluated_models, find_model, fingerprint
from pipeline.model_eval.page import index_page, problem_page
from pipeline.model_eval.summary import GREEDY, NOISE_P, comparisons, interval_text, model_figures
from pipeline.progress import Progress
from pipeline.prompts import fill, load_yaml
from pipeline.report.html import safe_name
from pipeline.stages.problems import read_problems

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_path", pa.string()),  # the checkpoint folder or hub id
        ("problem_id", pa.string()),
        ("problem", pa.string()),
        ("reference", pa.string()),
        ("sample", pa.int64()),  # GREEDY (-1) for the greedy answer, else 0 .. eval_model.samples - 1
        ("text", pa.string()),
        ("answer", pa.string()),  # the final answer read from the text; null when it gives none
        ("correct", pa.bool_()),  # undecided and no answer count as not correct
        ("checker", pa.string()),  # math-verify | text | judge | undecided | no answer | error
        ("check_reason", pa.string()),
        ("tokens", pa.int64()),
        ("finish_reason", pa.string()),  # stop | length | error
    ]
)


def outputs_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / "outputs" / f"{name}.parquet"


def benchmark(cfg: Config) -> list[dict]:
    read = read_problems(cfg.eval_model.benchmark, where="eval_model.benchmark")
    if read.rejects:
        log.warning(
            "%d of %d benchmark rows rejected (%s)",
            len(read.rejects),
            read.rows_read,
            ", ".join(f"{n} {why}" for why, n in read.by_reason.items()),
        )
    if not read.problems:
        raise ValueError(
            f"no valid problems in {cfg.eval_model.benchmark.source}: {read.rows_read} rows read"
        )
    return read.problems


def _messages(prompt: dict, problem: str) -> list[dict]:
    system = [{"role": "system", "content": prompt["system"]}] if prompt.get("system") else []
    return system + [{"role": "user", "content": fill(prompt["user"], problem=problem)}]


def requests(cfg: Config, problem: dict, prompt: dict) -> list[Request]:
    """The greedy request, then (with samples) one request for all the sampled answers."""
    em = cfg.eval_model
    messages = _messages(prompt, problem["problem"])
    pid = problem["problem_id"]
    out = [
        Request.chat(messages, max_tokens=em.max_tokens, seed=request_seed(cfg.seed, "eval", pid, "greedy"))
    ]
    if em.samples:
        out.append(
            Request.chat(
                messages,
                n=em.samples,
                max_tokens=em.max_tokens,
                temperature=em.temperature,
                top_p=em.top_p,
                seed=request_seed(cfg.seed, "eval", pid, "samples"),
            )
        )
    return out


class _Grader:
    """Reads each output's final answer and checks it: math-verify, then the answer judge (when
    configured) for what math-verify leaves undecided."""

    def __init__(self, cfg: Config, checker: AnswerChecker, pool: EnginePool):
        self.unboxed = cfg.eval_model.unboxed
        self.checker = checker
        jc = cfg.answer_check.judge
        self.judge = AnswerJudge(pool.get(jc.engine), jc) if jc else None

    async def grade(self, problem: dict, completions: list) -> list[dict]:
        rows = []
        for sample, comp in completions:
            answer = extract_final_answer(comp.text, self.unboxed) if comp.finish_reason != "error" else None
            answer = (answer or "").strip() or None  # an empty \boxed{} (the instruction copied) gives none
            rows.append(
                {
                    "sample": sample,
                    "text": comp.text,
                    "answer": answer,
                    "tokens": comp.tokens,
                    "finish_reason": comp.finish_reason,
                    "error": comp.error,
                }
            )
        answered = [r for r in rows if r["answer"] is not None]
        verdicts = await verdicts_async(self.checker, [(problem["answer"], r["answer"]) for r in answered])
        if self.judge is not None:
            items = [JudgeItem(problem["problem"], problem["answer"], r["answer"]) for r in answered]
            verdicts = await asyncio.to_thread(self.judge.settle, items, verdicts)
        for r, v in zip(answered, verdicts):
            r.update(correct=v.correct is True, checker=v.checker, check_reason=v.reason)
        for r in rows:
            if r["answer"] is None:
                error = r["finish_reason"] == "error"
                r.update(correct=False, checker="error" if error else NO_ANSWER, check_reason=r["error"])
            del r["error"]
        return rows


def run_model_outputs(cfg: Config, name: str, out_dir: str | Path, opener: Opener = open_engine) -> dict:
    """One model's answers to the benchmark: out_dir/outputs/<name>.parquet and its stats sidecar."""
    start = time.perf_counter()
    model = find_model(cfg, name)
    _check_checkpoint(model)
    problems = benchmark(cfg)
    prompt = load_yaml(cfg.eval_model.prompt)
    if "user" not in prompt:
        raise ValueError(f"prompt file {cfg.eval_model.prompt}: missing key 'user'")
    out = outputs_path(out_dir, name)
    with (
        EnginePool(cfg.engines, cache_path(out), opener) as pool,
        AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
    ):
        # Opened here rather than from the pool: its cache key is the checkpoint's files, not its path.
        engine = CachedEngine(fingerprint(model.engine.model), lambda: opener(model.engine), pool.cache)
        pool.open[f"model:{name}"] = engine  # closed with the pool
        grader = _Grader(cfg, checker, pool)
        rows = asyncio.run(_answer_all(cfg, name, problems, prompt, engine, grader))
        judge = grader.judge.stats() if grader.judge else None
        engines = pool.stats(pool.open)
    for r in rows:
        r.update(model=name, model_path=model.engine.model)
    write_table(rows, OUTPUT_SCHEMA, out)
    stats = {
        "model": name,
        "model_path": model.engine.model,
        "problems": len(problems),
        "outputs": len(rows),
        "correct": sum(r["correct"] for r in rows),
        "checkers": dict(sorted(Counter(r["checker"] for r in rows).items())),
        "judge": judge,
        "engines": engines,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    write_stats(out, stats)
    return stats


async def _answer_all(cfg, name, problems, prompt, engine, grader) -> list[dict]:
    with Progress(f"eval {name}", len(problems), "problems") as progress:

        async def one(problem: dict) -> list[dict]:
            greedy, *sampled = await generate_async(engine, requests(cfg, problem, prompt))
            completions = [(GREEDY, greedy[0])] + [
                (i, c) for i, c in enumerate(sampled[0] if sampled else [])
            ]
            rows = await grader.grade(problem, completions)
            progress.update(1, tokens=sum(r["tokens"] for r in rows))
            return [
                {
                    **r,
                    "problem_id": problem["problem_id"],
                    "problem": problem["problem"],
                    "reference": problem["answer"],
                }
                for r in rows
            ]

        done = await asyncio.gather(*(one(p) for p in problems))
    return [row for rows in done for row in rows]


def _check_checkpoint(model: ModelToEval) -> None:
    if model.trained_stage is None or model.engine.kind != "vllm":
        return
    if not (Path(model.engine.model) / "config.json").is_file():
        raise FileNotFoundError(
            f"model {model.name}: no checkpoint at {model.engine.model}; train stage "
            f"{model.trained_stage} first (snakemake train, or python -m pipeline train)"
        )


def run_eval_summary(cfg: Config, out_dir: str | Path) -> dict:
    """summary.json, index.html and problems/<id>.html from every model's outputs."""
    out_dir = Path(out_dir)
    names = [m.name for m in evaluated_models(cfg)]
    missing = [n for n in names if not outputs_path(out_dir, n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no outputs of {', '.join(missing)} in {out_dir / 'outputs'}: run python -m pipeline eval-model "
            f"--model NAME for each (or eval-model without --model for all)"
        )
    rows_by_model = {n: read_table(outputs_path(out_dir, n), OUTPUT_SCHEMA).to_pylist() for n in names}
    rows = [r for n in names for r in rows_by_model[n]]
    em = cfg.eval_model
    problems = {r["problem_id"]: r["problem"] for r in rows}
    summary = {
        "benchmark": {
            "source": em.benchmark.source,
            "split": em.benchmark.split,
            "subset": em.benchmark.subset,
        },
        "problems": len(problems),
        "samples": em.samples,
        "temperature": em.temperature,
        "max_tokens": em.max_tokens,
        "prompt": em.prompt,
        "checkers": sorted({r["checker"] for r in rows}),
        "noise_p": NOISE_P,
        "overlap_with_training": _overlap(cfg, problems),
        "models": {
            n: {
                "model_path": rows_by_model[n][0]["model_path"] if rows_by_model[n] else None,
                **model_figures(rows_by_model[n]),
            }
            for n in names
        },
        "comparisons": comparisons(rows_by_model),
    }
    write_json(out_dir / "summary.json", summary)
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    for pid, mine in by_problem.items():
        write_text(out_dir / "problems" / safe_name(pid), problem_page(mine, names))
    write_text(out_dir / "index.html", index_page(summary, rows))
    for line in summary_lines(summary):
        log.info(line)
    return summary


def run_eval_model(cfg: Config, out_dir: str | Path, opener: Opener = open_engine) -> dict:
    """Every model's outputs (one after the other, each engine closed before the next opens), then the summary."""
    for m in evaluated_models(cfg):
        run_model_outputs(cfg, m.name, out_dir, opener)
    return run_eval_summary(cfg, out_dir)


def summary_lines(summary: dict) -> list[str]:
    """A line per model and per pair of models, as the log and the CLI show them."""
    lines = []
    for name, m in summary["models"].items():
        g = m["greedy"]
        passes = ", ".join(f"pass@{k} {v:.3f}" for k, v in m["pass_at_k"].items())
        lines.append(
            f"{name}: greedy {g['correct']}/{m['problems']} (95% {interval_text(g['ci95'])}){'; ' + passes if passes else ''}"
        )
    for c in summary["comparisons"]:
        noise = "within noise" if c["within_noise"] else "beyond noise"
        lines.append(
            f"{c['a']} vs {c['b']}: {c['difference']:+.3f} ({noise}, McNemar p {c['mcnemar_p']:.3f})"
        )
    return lines


def _overlap(cfg: Config, problems: dict[str, str]) -> dict:
    """Benchmark problems whose text is a training problem of this run (a held-out set should have none)."""
    shards = sorted((cfg.run_dir / "problems").glob("shard-*.parquet"))
    seen = {_text_key(p) for s in shards for p in read_table(s, PROBLEM_SCHEMA)["problem"].to_pylist()}
    ids = [pid for pid, text in problems.items() if _text_key(text) in seen]
    if ids:
        log.warning("%d benchmark problems are training problems of run %s: %s", len(ids), cfg.run, ids[:10])
    return {"count": len(ids), "ids": ids[:20]}


def _text_key(text: str) -> str:
    return " ".join(text.lower().split())
