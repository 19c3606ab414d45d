"""Command line: every stage runs by hand on one shard; the Snakefile's rules call these same commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline import config as config_mod


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    def stage(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", help="YAML config merged over config/config.yaml")
        return p

    p = stage("problems", "load, validate and shard the problems")
    p.add_argument("--out-dir", required=True, help="writes shard-NNNNN.parquet, rejects.parquet, stats.json")
    p = stage("trees", "grow and prune the reasoning trees of one shard")
    p.add_argument("--problems", required=True)
    p.add_argument("--out", required=True)
    p = stage("thoughts", "derive journeys and shortcuts from one shard's trees")
    p.add_argument("--trees", required=True)
    p.add_argument("--problems", required=True)
    p.add_argument("--out", required=True)
    p = stage("polish", "polish one shard's journeys with an LLM, behind the guard")
    p.add_argument("--thoughts", required=True)
    p.add_argument("--out", required=True)
    p = stage("export", "write the training formats, dataset card and stats.json from all shards")
    p.add_argument("--polished", nargs="+", required=True)
    p.add_argument("--trees", nargs="+", required=True, help="the trees shards, for the tree formats")
    p.add_argument("--problems", nargs="+", required=True, help="the problems shards, for reference answers")
    p.add_argument("--out-dir", required=True, help="the run's sft/ folder")
    p = stage("eval-scorer", "measure the configured scorers against step-labelled solutions (eval:)")
    p.add_argument("--out-dir", required=True, help="judgements.parquet, rejects, summary.json, index.html")
    stage("check-config", "validate a config and print it resolved")
    sub.add_parser("prepare-model", help="convert the embedded SmolLM2 GGUF to a Hugging Face folder")
    p = sub.add_parser(
        "show-tree", help="print one problem's tree with verdicts, scores and its journey's walk"
    )
    p.add_argument("--trees", required=True, help="a trees/shard-NNNNN.parquet")
    p.add_argument("--problem-id", required=True)
    p.add_argument("--thoughts", help="that shard's thoughts parquet, to mark the shortcut and the walk")
    p = sub.add_parser("report", help="write the run's static HTML report (index + a page per problem)")
    p.add_argument("--run-dir", required=True, help="outputs/<run>")
    p.add_argument("--out-dir", required=True, help="usually outputs/<run>/report")
    p = sub.add_parser("inspect", help="summarise any stage's parquet: rows, columns, first rows")
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=3)
    return ap


def _show_tree(args) -> int:
    import pyarrow.compute as pc

    from pipeline.tables import NODE_SCHEMA, THOUGHT_SCHEMA, read_table
    from trees.model import trees_from_table
    from trees.render import render_tree

    nodes = read_table(args.trees, NODE_SCHEMA)
    trees = trees_from_table(nodes.filter(pc.equal(nodes["problem_id"], args.problem_id)))
    if not trees:
        print(f"error: no tree for problem {args.problem_id!r} in {args.trees}", file=sys.stderr)
        return 2
    visits, shortcut = [], []
    if args.thoughts:
        journeys = [
            t
            for t in read_table(args.thoughts, THOUGHT_SCHEMA).to_pylist()
            if t["problem_id"] == args.problem_id and t["kind"] == "journey"
        ]
        if journeys:
            visits, shortcut = journeys[0]["visits"], journeys[0]["shortcut"]
    print(render_tree(trees[0], visits, shortcut))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "show-tree":
        return _show_tree(args)
    if args.command == "report":
        from pipeline.report import run_report

        print(json.dumps(run_report(args.run_dir, args.out_dir)))
        return 0
    if args.command == "inspect":
        import pyarrow.parquet as pq

        from trees.render import summarize_table

        print(summarize_table(pq.read_table(args.path), args.rows))
        return 0
    if args.command == "prepare-model":
        from pipeline.model_files import EMBEDDED_MODEL, resolve_model

        print(resolve_model(EMBEDDED_MODEL))
        return 0
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(cfg.raw, indent=2))
        return 0
    if args.command == "problems":
        from pipeline.stages.problems import run_problems

        stats = run_problems(cfg, args.out_dir)
    elif args.command == "trees":
        from pipeline.stages.trees import run_trees

        stats = run_trees(cfg, args.problems, args.out)
    elif args.command == "thoughts":
        from pipeline.stages.thoughts import run_thoughts

        stats = run_thoughts(cfg, args.trees, args.problems, args.out)
    elif args.command == "eval-scorer":
        from pipeline.stages.eval_scorer import run_eval_scorer

        try:
            stats = run_eval_scorer(cfg, args.out_dir)
        except config_mod.ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "polish":
        from pipeline.stages.polish import run_polish

        stats = run_polish(cfg, args.thoughts, args.out)
    else:
        from pipeline.stages.export import run_export
        from pipeline.yield_report import YieldError

        try:
            stats = run_export(cfg, args.polished, args.trees, args.problems, args.out_dir)
        except YieldError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    summary = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
    print(json.dumps(summary))
    return 0
