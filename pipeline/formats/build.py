"""The configured training formats of a run: file name -> rows and schema, from its trees and thoughts,
and writing them under sft/."""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.config import Config
from pipeline.formats import output_files
from pipeline.formats.preference import outcome_pairs, preference_pairs
from pipeline.formats.revision import revision_rows
from pipeline.formats.sft import o1_journey_row, sft_row, sharegpt_info, sharegpt_row
from pipeline.formats.step_preference import step_pairs
from pipeline.formats.stepwise import stepwise_rows
from pipeline.io.tables import (
    O1_JOURNEY_SCHEMA,
    PREFERENCE_SCHEMA,
    REVISION_SCHEMA,
    SFT_SCHEMA,
    SHAREGPT_SCHEMA,
    STEP_PREFERENCE_SCHEMA,
    STEPWISE_SCHEMA,
    write_json,
    write_table,
)
from trees.model import Tree


def _rng(cfg: Config, tree: Tree, fmt: str) -> random.Random:
    # One stream per tree and format: a tree's rows do not depend on its shard or on other formats.
    return random.Random(f"{cfg.seed}/{fmt}/{tree.problem_id}")


def training_thoughts(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The journeys and shortcuts the SFT formats take: rows whose final answer is known not to verify
    (correct False: an engine method that ran out of budget) and `solution` rows (the outcome
    method's samples, for preference pairs) are left out."""
    usable = [r for r in rows if r.get("correct") is not False]
    return [r for r in usable if r["kind"] == "journey"], [r for r in usable if r["kind"] == "shortcut"]


def format_tables(
    cfg: Config, trees: list[Tree], thoughts: list[dict]
) -> dict[str, tuple[list[dict], object]]:
    """file name -> (rows, schema) for every parquet file of the configured formats."""
    e = cfg.export
    journeys, shortcuts = training_thoughts(thoughts)
    builders = {
        "journey.parquet": lambda: ([sft_row(r) for r in journeys], SFT_SCHEMA),
        "shortcut.parquet": lambda: ([sft_row(r) for r in shortcuts], SFT_SCHEMA),
        "preference.parquet": lambda: (
            [p for t in trees for p in preference_pairs(t, _rng(cfg, t, "preference"), e.pairs_per_problem)]
            + outcome_pairs(thoughts, cfg.seed, cfg.outcome.pairs_per_problem),
            PREFERENCE_SCHEMA,
        ),
        "step_preference.parquet": lambda: (
            [
                p
                for t in trees
                for p in step_pairs(
                    t, _rng(cfg, t, "step_preference"), e.step_pairs_per_problem, e.step_pairs_per_node
                )
            ],
            STEP_PREFERENCE_SCHEMA,
        ),
        "stepwise.parquet": lambda: (
            [r for t in trees for r in stepwise_rows(t, e.step_labels)],
            STEPWISE_SCHEMA,
        ),
        "revision.parquet": lambda: (
            [r for t in trees for r in revision_rows(t, _rng(cfg, t, "revision"), e.revision_max_wrong)],
            REVISION_SCHEMA,
        ),
        "o1_journey.parquet": lambda: ([o1_journey_row(r) for r in journeys], O1_JOURNEY_SCHEMA),
        "journey_sharegpt.parquet": lambda: ([sharegpt_row(r) for r in journeys], SHAREGPT_SCHEMA),
        "shortcut_sharegpt.parquet": lambda: ([sharegpt_row(r) for r in shortcuts], SHAREGPT_SCHEMA),
    }
    return {f: builders[f]() for f in output_files(e.formats) if f in builders}


def write_formats(cfg: Config, tables: dict[str, tuple[list[dict], object]], out_dir: Path) -> None:
    """Each table as out_dir/<file>, and LLaMA-Factory's dataset_info.json beside the sharegpt files."""
    for name, (rows, schema) in tables.items():
        write_table(rows, schema, out_dir / name)
    if "sharegpt" in cfg.export.formats:
        info = {
            f"{cfg.run}_{f.removesuffix('_sharegpt.parquet')}": sharegpt_info(f)
            for f in tables
            if "sharegpt" in f
        }
        write_json(out_dir / "dataset_info.json", info)
