# Journey-learning data: problems -> trees -> thoughts -> polished -> sft, one job per shard and stage.
# Rules stay thin: each calls the project's CLI, so any step also runs by hand (see README.md).
import json
import re
import sys
from pathlib import Path

import yaml
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from pipeline.config import from_dict
from pipeline.formats import output_files
from pipeline.model_eval.models import evaluated_models, train_dir
from pipeline.placement import gpus
from pipeline.stages.problems import check_source
from pipeline.train import stage_files
from pipeline.yield_report import yield_lines

configfile: "config/config.yaml"
CONFIG = from_dict(config)  # config/schema.yaml plus cross-field checks; the error names the bad field
check_source(CONFIG.problems)  # a missing source or column stops here, before any job starts
check_source(CONFIG.eval_model.benchmark, "eval_model.benchmark")

RUN = Path(config["output_root"]) / config["run"]
METHODS = CONFIG.thoughts.methods  # how long thoughts are built, merged in this order
# A GPU (sbatch --gpus=1 under profiles/slurm) only for the jobs that load a model in-process.
GPUS = {stage: gpus(CONFIG, stage) for stage in ("trees", "polish", *(m for m in METHODS if m != "tree"))}
CFG = RUN / "config.yaml"  # the whole merged config: what a user reads, and what the evaluations run with
# The data jobs and the training read a copy without the sections they never use, so a change to an
# evaluation's settings redoes neither (training has no response cache to make a rerun free).
SCOPED = {"data": ("train", "eval_model", "eval"), "train": ("eval_model", "eval")}
DATA_CFG, TRAIN_CFG = (RUN / f"config.{scope}.yaml" for scope in SCOPED)
ENV = "config/conda.yaml"  # used with --software-deployment-method conda
# Without conda, jobs use the interpreter running Snakemake, so they see the same packages.
IN_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PY = "python -m pipeline" if IN_CONDA else f"{sys.executable} -m pipeline"

wildcard_constraints:
    shard=r"shard-\d{5}",

# Run where Snakemake runs, not as cluster jobs: the config copies, and the CPU stages that take
# seconds per shard, where a SLURM job's queue wait and start-up would cost more than the work. The
# problems stage also reads a Hub dataset there, on the login node that has the internet access compute
# nodes often lack. Export and report read every shard, so they stay jobs with the profile's memory.
localrules:
    all,
    resolved_config,
    scoped_config,
    problems,
    thoughts_tree,
    thoughts,
    eval,
    compare,


def shard_files(stage, suffix=".parquet"):
    """An input function: the stage's file (parquet, or its `.stats.json` sidecar) of every shard the
    problems checkpoint wrote."""

    def files(wildcards):
        shards = glob_wildcards(Path(checkpoints.problems.get().output[0]) / "{shard}.parquet").shard
        return expand(RUN / stage / f"{{shard}}{suffix}", shard=sorted(s for s in shards if s.startswith("shard-")))

    return files


onsuccess:
    # The yield and its causes, in the Snakemake log itself rather than only in the export job's log.
    stats_file = RUN / "stats.json"
    if stats_file.is_file():
        report = json.loads(stats_file.read_text()).get("yield_report")
        if report:
            warn = report["low"] or report["empty_files"]
            for line in yield_lines(report):
                (logger.warning if warn else logger.info)(f"{'WARNING ' if warn else ''}yield: {line}")


rule all:
    input:
        RUN / "stats.json",
        RUN / "report/index.html",


# The merged config; rewritten (and everything downstream redone) when it changes.
rule resolved_config:
    output:
        CFG,
    log:
        RUN / "logs/config.log",
    params:
        config=json.dumps(config, sort_keys=True),
    conda:
        ENV
    run:
        Path(output[0]).write_text(yaml.safe_dump(json.loads(params.config), sort_keys=False))


rule scoped_config:
    output:
        RUN / "config.{scope}.yaml",
    log:
        RUN / "logs/config.{scope}.log",
    wildcard_constraints:
        scope="|".join(SCOPED),
    params:
        config=lambda wildcards: json.dumps(
            {k: v for k, v in config.items() if k not in SCOPED[wildcards.scope]}, sort_keys=True
        ),
    conda:
        ENV
    run:
        Path(output[0]).write_text(yaml.safe_dump(json.loads(params.config), sort_keys=False))


checkpoint problems:
    input:
        cfg=DATA_CFG,
    output:
        directory(RUN / "problems"),
    log:
        RUN / "logs/problems.log",
    params:
        py=PY,
    conda:
        ENV
    shell:
        "{params.py} problems --config {input.cfg} --out-dir {output} > {log} 2>&1"


rule trees:
    input:
        cfg=DATA_CFG,
        problems=RUN / "problems/{shard}.parquet",
    output:
        parquet=RUN / "trees/{shard}.parquet",
        stats=RUN / "trees/{shard}.stats.json",
    log:
        RUN / "logs/trees/{shard}.log",
    resources:
        llm=1,
        gpu=GPUS["trees"],
    params:
        py=PY,
    conda:
        ENV
    shell:
        "{params.py} trees --config {input.cfg} --problems {input.problems} --out {output.parquet} > {log} 2>&1"


# The tree walk: CPU only, from the shard's trees.
rule thoughts_tree:
    input:
        cfg=DATA_CFG,
        trees=RUN / "trees/{shard}.parquet",
        problems=RUN / "problems/{shard}.parquet",
    output:
        parquet=RUN / "thoughts/tree/{shard}.parquet",
        stats=RUN / "thoughts/tree/{shard}.stats.json",
    log:
        RUN / "logs/thoughts/tree/{shard}.log",
    params:
        py=PY,
    conda:
        ENV
    shell:
        "{params.py} thoughts --config {input.cfg} --method tree --trees {input.trees} "
        "--problems {input.problems} --out {output.parquet} > {log} 2>&1"


# The engine methods (thoughts.methods): one job per method and shard, holding a model, so a
# cluster profile can give this rule alone a GPU.
rule thoughts_method:
    input:
        cfg=DATA_CFG,
        problems=RUN / "problems/{shard}.parquet",
    output:
        parquet=RUN / "thoughts/{method}/{shard}.parquet",
        stats=RUN / "thoughts/{method}/{shard}.stats.json",
    log:
        RUN / "logs/thoughts/{method}/{shard}.log",
    wildcard_constraints:
        method="|".join(re.escape(m) for m in METHODS if m != "tree") or "(?!)",
    resources:
        llm=1,
        gpu=lambda wildcards: GPUS[wildcards.method],
    params:
        py=PY,
    conda:
        ENV
    shell:
        "{params.py} thoughts --config {input.cfg} --method {wildcards.method} "
        "--problems {input.problems} --out {output.parquet} > {log} 2>&1"


rule thoughts:
    input:
        cfg=DATA_CFG,
        parts=expand(RUN / "thoughts/{method}/{{shard}}.parquet", method=METHODS),
        stats=expand(RUN / "thoughts/{method}/{{shard}}.stats.json", method=METHODS),
    output:
        parquet=RUN / "thoughts/{shard}.parquet",
        stats=RUN / "thoughts/{shard}.stats.json",
    log:
        RUN / "logs/thoughts/{shard}.log",
    params:
        py=PY,
        parts=lambda wildcards, input: " ".join(f"{m}={p}" for m, p in zip(METHODS, input.parts)),
    conda:
        ENV
    shell:
        "{params.py} merge-thoughts --config {input.cfg} --parts {params.parts} --out {output.parquet} > {log} 2>&1"


rule polish:
    input:
        cfg=DATA_CFG,
        thoughts=RUN / "thoughts/{shard}.parquet",
    output:
        parquet=RUN / "polished/{shard}.parquet",
        stats=RUN / "polished/{shard}.stats.json",
    log:
        RUN / "logs/polish/{shard}.log",
    resources:
        llm=1,
        gpu=GPUS["polish"],
    params:
        py=PY,
    conda:
        ENV
    shell:
        "{params.py} polish --config {input.cfg} --thoughts {input.thoughts} --out {output.parquet} > {log} 2>&1"


rule export:
    input:
        cfg=DATA_CFG,
        polished=shard_files("polished"),
        trees=shard_files("trees"),
        problems=shard_files("problems"),
        # Read for the run's stats: each stage's sidecars, and the problems stage's own.
        trees_stats=shard_files("trees", ".stats.json"),
        thoughts_stats=shard_files("thoughts", ".stats.json"),
        polished_stats=shard_files("polished", ".stats.json"),
        problems_stats=lambda wildcards: Path(checkpoints.problems.get().output[0]) / "stats.json",
    output:
        files=[RUN / "sft" / f for f in output_files(CONFIG.export.formats)],
        card=RUN / "sft/README.md",
        stats=RUN / "stats.json",
    log:
        RUN / "logs/export.log",
    params:
        py=PY,
        out_dir=RUN / "sft",
    conda:
        ENV
    shell:
        "{params.py} export --config {input.cfg} --polished {input.polished} --trees {input.trees} "
        "--problems {input.problems} --out-dir {params.out_dir} > {log} 2>&1"


rule report:
    input:
        cfg=CFG,
        stats=RUN / "stats.json",
        problems=shard_files("problems"),
        trees=shard_files("trees"),
        thoughts=shard_files("thoughts"),
        polished=shard_files("polished"),
        # The export's files the pages show (the preference pairs, when configured).
        sft=[RUN / "sft" / f for f in output_files(CONFIG.export.formats)],
    output:
        RUN / "report/index.html",
    log:
        RUN / "logs/report.log",
    params:
        py=PY,
        run_dir=RUN,
    conda:
        ENV
    shell:
        "{params.py} report --run-dir {params.run_dir} --out-dir {params.run_dir}/report > {log} 2>&1"


# Scorer evaluation: not part of `all`; run it with `snakemake --profile profiles/local eval`.
rule eval_scorer:
    input:
        cfg=CFG,
        source=[CONFIG.eval.source] if Path(CONFIG.eval.source).is_file() else [],
    output:
        summary=RUN / "eval/summary.json",
        judgements=RUN / "eval/judgements.parquet",
        rejects=RUN / "eval/rejects.parquet",
        page=RUN / "eval/index.html",
    log:
        RUN / "logs/eval_scorer.log",
    resources:
        llm=1,
    params:
        py=PY,
        out_dir=RUN / "eval",
    conda:
        ENV
    shell:
        "{params.py} eval-scorer --config {input.cfg} --out-dir {params.out_dir} > {log} 2>&1"


rule eval:
    input:
        RUN / "eval/summary.json",


# The paper's comparison (not part of `all`): train the stages in train.stages on the run's data, then
# evaluate the base model and each checkpoint on the held-out benchmark. `snakemake ... compare`.
TRAIN = train_dir(CONFIG)
EVAL_MODEL = RUN / "eval_model"
EVAL_MODELS = {m.name: m for m in evaluated_models(CONFIG)}


rule train:
    input:
        cfg=TRAIN_CFG,
        sft=[RUN / "sft" / f for f in stage_files(CONFIG.train.stages)],
    output:
        TRAIN / "train.json",
    log:
        RUN / "logs/train.log",
    resources:
        llm=1,
        gpu=1,
    params:
        py=PY,
        sft=RUN / "sft",
        out_dir=TRAIN,
    conda:
        ENV
    shell:
        "{params.py} train --config {input.cfg} --sft-dir {params.sft} --out-dir {params.out_dir} > {log} 2>&1"


rule eval_model_outputs:
    input:
        cfg=CFG,
        # A trained stage's checkpoint comes from the train rule; the base and listed models need nothing.
        trained=lambda wildcards: [TRAIN / "train.json"] if EVAL_MODELS[wildcards.model].trained_stage else [],
        source=[CONFIG.eval_model.benchmark.source] if Path(CONFIG.eval_model.benchmark.source).is_file() else [],
    output:
        parquet=EVAL_MODEL / "outputs/{model}.parquet",
        stats=EVAL_MODEL / "outputs/{model}.stats.json",
    log:
        RUN / "logs/eval_model/{model}.log",
    wildcard_constraints:
        model="|".join(re.escape(m) for m in EVAL_MODELS),
    resources:
        llm=1,
        gpu=lambda wildcards: int(EVAL_MODELS[wildcards.model].engine.kind == "vllm"),
    params:
        py=PY,
        out_dir=EVAL_MODEL,
    conda:
        ENV
    shell:
        "{params.py} eval-model --config {input.cfg} --out-dir {params.out_dir} --model {wildcards.model} > {log} 2>&1"


rule eval_model:
    input:
        cfg=CFG,
        outputs=expand(EVAL_MODEL / "outputs/{model}.parquet", model=EVAL_MODELS),
    output:
        summary=EVAL_MODEL / "summary.json",
        page=EVAL_MODEL / "index.html",
    log:
        RUN / "logs/eval_model/summary.log",
    params:
        py=PY,
        out_dir=EVAL_MODEL,
    conda:
        ENV
    shell:
        "{params.py} eval-model --config {input.cfg} --out-dir {params.out_dir} --summarize > {log} 2>&1"


rule compare:
    input:
        EVAL_MODEL / "summary.json",
