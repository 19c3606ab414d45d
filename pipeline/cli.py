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
    stage("check-config", "validate a config and print it resolved")
    sub.add_parser("prepare-model", help="convert the embedded SmolLM2 GGUF to a Hugging Face folder")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    elif args.command == "polish":
        from pipeline.stages.polish import run_polish

        stats = run_polish(cfg, args.thoughts, args.out)
    else:
        from pipeline.stages.export import run_export

        stats = run_export(cfg, args.polished, args.trees, args.problems, args.out_dir)
    summary = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}
    print(json.dumps(summary))
    return 0
