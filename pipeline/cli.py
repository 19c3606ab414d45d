"""Command line: every stage runs by hand on one shard; the Snakefile's rules call these same commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline import config as config_mod
from pipeline.termination import cancellable


def parser() -> argparse.ArgumentParser:
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
    p = stage("thoughts", "build one method's long thoughts for one shard (tree: from its trees)")
    p.add_argument("--method", default="tree", help="tree (default), propose-critique, debate, ...")
    p.add_argument("--trees", help="the shard's trees; method tree only")
    p.add_argument("--problems", required=True)
    p.add_argument("--out", required=True)
    p = stage("merge-thoughts", "concatenate one shard's thoughts of several methods")
    p.add_argument("--parts", nargs="+", required=True, metavar="METHOD=PATH", help="e.g. tree=t.parquet")
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
    p = stage("eval-model", "trained models on the held-out benchmark (eval_model:): outputs, summary, pages")
    p.add_argument("--out-dir", required=True, help="usually outputs/<run>/eval_model")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="only this model's outputs (a workflow job); no summary")
    which.add_argument(
        "--summarize", action="store_true", help="only the summary, from every model's outputs"
    )
    p = stage("estimate", "run the first N problems, then scale tokens, cost and time to the dataset")
    p.add_argument("--sample", type=int, default=8, help="problems to run (default 8)")
    p.add_argument("--out-dir", required=True, help="gets the sample's stages and estimate.json")
    stage("check-config", "validate a config and print it resolved")
    sub.add_parser("prepare-model", help="convert the embedded SmolLM2 GGUF to a Hugging Face folder")
    p = sub.add_parser(
        "show-tree", help="print one problem's tree with verdicts, scores and its journey's walk"
    )
    p.add_argument("--trees", required=True, help="a trees/shard-NNNNN.parquet")
    p.add_argument("--problem-id", required=True)
    p.add_argument("--thoughts", help="that shard's thoughts parquet, to mark the shortcut and the walk")
    p = sub.add_parser(
        "graph", help="write trees as graphs for graph tools: one GraphML or JSON file per tree"
    )
    p.add_argument("--trees", required=True, help="a trees/shard-NNNNN.parquet")
    p.add_argument("--out-dir", required=True)
    p.add_argument(
        "--format", choices=["graphml", "json"], default="graphml", help="json: networkx node-link"
    )
    p.add_argument("--problem-id", help="only this problem's tree")
    p.add_argument("--problems", help="that shard's problems parquet, for the reference answers")
    p = sub.add_parser("report", help="write the run's static HTML report (index + a page per problem)")
    runs = p.add_mutually_exclusive_group(required=True)
    runs.add_argument("--run-dir", help="outputs/<run>")
    runs.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="one page: two runs' figures side by side"
    )
    p.add_argument("--out-dir", required=True, help="usually outputs/<run>/report")
    p = sub.add_parser("inspect", help="summarise any stage's parquet: rows, columns, first rows")
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=3)
    from pipeline.train import STAGES as TRAIN_STAGES

    p = stage(
        "train", "TRL: SFT on shortcuts, then on journeys (and the control, or DPO), from the config's train:"
    )
    p.add_argument("--sft-dir", required=True, help="a run's sft/ folder")
    p.add_argument("--out-dir", required=True, help="gets a model folder per stage and train.json")
    p.add_argument("--model", help="HF folder or id; default: train.model, else the policy engine's model")
    p.add_argument(
        "--stages",
        nargs="+",
        choices=list(TRAIN_STAGES),
        help="default: train.stages; run in the order " + ", ".join(TRAIN_STAGES),
    )
    p.add_argument(
        "--max-steps", type=int, help="per stage; -1: the paper's epochs (default: train.max_steps)"
    )
    p.add_argument("--batch-size", type=int, help="per device (default: train.batch_size)")
    p.add_argument("--learning-rate", type=float, help="default: train.learning_rate, else TRL's")
    p.add_argument(
        "--max-length", type=int, help="tokens per example; longer ones are cut (train.max_length)"
    )
    return ap


def _show_tree(args) -> int:
    import pyarrow.compute as pc

    from pipeline.io.tables import NODE_SCHEMA, THOUGHT_SCHEMA, read_table
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
            # Only the tree walk's journeys have visits on the tree (other methods build no tree).
            if t["problem_id"] == args.problem_id and t["kind"] == "journey" and t["method"] in (None, "tree")
        ]
        if journeys:
            visits, shortcut = journeys[0]["visits"], journeys[0]["shortcut"]
    print(render_tree(trees[0], visits, shortcut))
    return 0


def _graph(args) -> int:
    from pathlib import Path

    from pipeline.io.tables import NODE_SCHEMA, PROBLEM_SCHEMA, read_table
    from trees.graph import WRITERS
    from trees.model import trees_from_table

    missing = [path for path in (args.trees, args.problems) if path and not Path(path).is_file()]
    if missing:
        print(f"error: no such file: {missing[0]}", file=sys.stderr)
        return 2
    try:
        nodes = read_table(args.trees, NODE_SCHEMA)
        problems = read_table(args.problems, PROBLEM_SCHEMA).to_pylist() if args.problems else []
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trees = trees_from_table(nodes, {p["problem_id"]: p["answer"] for p in problems})
    if args.problem_id is not None:
        trees = [t for t in trees if t.problem_id == args.problem_id]
        if not trees:
            print(f"error: no tree for problem {args.problem_id!r} in {args.trees}", file=sys.stderr)
            return 2
    for path in WRITERS[args.format](trees, args.out_dir):
        print(path)
    return 0


class _Refused(Exception):
    """A command that cannot run as asked: the message goes to stderr, `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _report(args) -> int:
    from pipeline.report import RunFilesError, compare_runs, run_report

    try:
        stats = (
            compare_runs(*args.compare, args.out_dir)
            if args.compare
            else run_report(args.run_dir, args.out_dir)
        )
    except RunFilesError as exc:
        raise _Refused(str(exc)) from None
    print(json.dumps(stats))
    return 0


def _inspect(args) -> int:
    import pyarrow.parquet as pq

    from trees.render import summarize_table

    print(summarize_table(pq.read_table(args.path), args.rows))
    return 0


def _prepare_model(args) -> int:
    from pipeline.model_files import EMBEDDED_MODEL, resolve_model

    print(resolve_model(EMBEDDED_MODEL))
    return 0


# Commands that need no config: each prints its own result and returns the exit status.
TOOLS = {
    "show-tree": _show_tree,
    "report": _report,
    "graph": _graph,
    "inspect": _inspect,
    "prepare-model": _prepare_model,
}


def _check_config(cfg, args) -> None:
    print(json.dumps(cfg.raw, indent=2))


def _problems(cfg, args) -> dict:
    from pipeline.stages.problems import run_problems

    return run_problems(cfg, args.out_dir)


def _trees(cfg, args) -> dict:
    from pipeline.stages.trees import run_trees

    return run_trees(cfg, args.problems, args.out)


def _thoughts(cfg, args) -> dict:
    from pipeline.methods import METHODS, method_module
    from pipeline.stages.thoughts import run_method

    if args.method not in METHODS:
        raise _Refused(f"unknown method {args.method!r} (known: {', '.join(METHODS)})")
    if method_module(args.method).READS == "trees" and not args.trees:
        raise _Refused(f"method {args.method} reads the shard's trees: give --trees")
    return run_method(cfg, args.method, args.problems, args.out, args.trees)


def _merge_thoughts(cfg, args) -> dict:
    from pipeline.stages.thoughts import merge_thoughts

    parts = dict(part.split("=", 1) for part in args.parts if "=" in part)
    if len(parts) != len(args.parts):
        raise _Refused("--parts takes METHOD=PATH pairs, each method once")
    return merge_thoughts(cfg, parts, args.out)


def _eval_scorer(cfg, args) -> dict:
    from pipeline.stages.eval_scorer import run_eval_scorer

    try:
        return run_eval_scorer(cfg, args.out_dir)
    except config_mod.ConfigError as exc:
        raise _Refused(str(exc)) from None


def _eval_model(cfg, args) -> dict:
    from pipeline.stages import eval_model as ev

    try:
        if args.model:
            return ev.run_model_outputs(cfg, args.model, args.out_dir)
        summary = (
            ev.run_eval_summary(cfg, args.out_dir) if args.summarize else ev.run_eval_model(cfg, args.out_dir)
        )
    except (FileNotFoundError, ValueError) as exc:
        raise _Refused(str(exc)) from None
    print("\n".join(ev.summary_lines(summary)))
    return None


def _train(cfg, args) -> None:
    from pathlib import Path

    from pipeline.model_eval.models import base_model
    from pipeline.model_files import resolve_model
    from pipeline.train import TrainOptions, train

    tc = cfg.train
    flag = {k: getattr(args, k) for k in ("stages", "max_steps", "batch_size", "learning_rate", "max_length")}
    chosen = {k: getattr(tc, k) if v is None else v for k, v in flag.items()}
    opts = TrainOptions(
        model=resolve_model(args.model or base_model(cfg)),
        sft_dir=Path(args.sft_dir),
        out_dir=Path(args.out_dir),
        **{**chosen, "stages": tuple(chosen["stages"])},
    )
    try:
        stages = train(opts)
    except (FileNotFoundError, ValueError) as exc:
        raise _Refused(str(exc)) from None
    print(json.dumps([{k: v for k, v in s.items() if k != "losses"} for s in stages]))


def _polish(cfg, args) -> dict:
    from pipeline.stages.polish import run_polish

    return run_polish(cfg, args.thoughts, args.out)


def _export(cfg, args) -> dict:
    from pipeline.stages.export import run_export
    from pipeline.yield_report import YieldError

    try:
        return run_export(cfg, args.polished, args.trees, args.problems, args.out_dir)
    except YieldError as exc:
        raise _Refused(str(exc), code=1) from None


def _estimate(cfg, args) -> dict:
    from pipeline.stages.estimate import run_estimate

    if args.sample < 1:
        raise _Refused("--sample must be at least 1")
    try:
        return run_estimate(cfg, args.sample, args.out_dir)
    except ValueError as exc:
        raise _Refused(str(exc)) from None


# Commands on a config: each returns its stats, whose flat figures are printed as one JSON line.
STAGES = {
    "check-config": _check_config,
    "problems": _problems,
    "trees": _trees,
    "thoughts": _thoughts,
    "merge-thoughts": _merge_thoughts,
    "eval-scorer": _eval_scorer,
    "eval-model": _eval_model,
    "train": _train,
    "polish": _polish,
    "export": _export,
    "estimate": _estimate,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with cancellable():
        try:
            return _run(args)
        except _Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.code


def _run(args: argparse.Namespace) -> int:
    if args.command in TOOLS:
        return TOOLS[args.command](args)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        raise _Refused(str(exc)) from None
    stats = STAGES[args.command](cfg, args)
    if stats is not None:
        print(json.dumps({k: v for k, v in stats.items() if not isinstance(v, (dict, list))}))
    return 0
