"""Trees stage: the shard's problems through the tree search (pipeline/search/builder.py), its
nodes and stats written beside the response cache."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.answers import AnswerChecker
from pipeline.answers.judge import AnswerJudge
from pipeline.config import Config
from pipeline.engines import EnginePool, Opener, cache_path, open_engine
from pipeline.io.tables import NODE_SCHEMA, PROBLEM_SCHEMA, read_table, write_stats, write_table
from pipeline.placement import stage_engines
from pipeline.scorers import make_scorer
from pipeline.search.builder import TreeBuilder, tree_stats


def run_trees(
    cfg: Config, problems_path: str | Path, out_path: str | Path, opener: Opener = open_engine
) -> dict:
    start = time.perf_counter()
    problems = read_table(problems_path, PROBLEM_SCHEMA).to_pylist()
    with (
        EnginePool(cfg.engines, cache_path(out_path), opener) as pool,
        AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
    ):
        policy = pool.get(cfg.policy.engine)
        scorer = make_scorer(cfg.pruning.scorer, cfg, pool, checker)
        annotators = tuple(make_scorer(name, cfg, pool, checker) for name in cfg.annotate)
        judge_cfg = cfg.answer_check.judge
        judge = AnswerJudge(pool.get(judge_cfg.engine), judge_cfg) if judge_cfg else None
        builder = TreeBuilder(cfg, policy, scorer, checker, annotators, judge)
        nodes = builder.build(problems)
        engines = pool.stats(stage_engines(cfg, "trees"))
    write_table([n.__dict__ for n in nodes], NODE_SCHEMA, out_path)
    wall = time.perf_counter() - start
    engine_s = sum(e["engine_s"] for e in engines.values())
    generated = sum(builder.counts[k] for k in ("policy_tokens", "scorer_tokens", "annotator_tokens"))
    generated += judge.counts["tokens"] if judge else 0
    stats = {
        **tree_stats(nodes),
        **dict(builder.counts),
        "scorer_problems": dict(builder.scorer_problems),
        **({"answer_judge": judge.stats()} if judge else {}),
        "engines": engines,
        "wall_s": round(wall, 3),
        "engine_s": round(engine_s, 3),
        "generated_tokens_per_s": round(generated / engine_s, 1) if engine_s else None,
    }
    write_stats(out_path, stats)
    return stats
