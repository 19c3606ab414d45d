"""Train on an export with TRL, as the paper did: SFT on shortcuts, then SFT on journeys from that checkpoint,
then DPO on the preference pairs from the journey checkpoint; on request, DPO on the step-level pairs
(process-level DPO, the paper's next step) after that, and the paper's control: from the shortcut
checkpoint, SFT on the shortcuts of the very problems the journeys cover, for the journeys' epochs."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Stage -> the sft/ file it trains on, in the order the paper runs them; each starts from the one before.
STAGES = {
    "shortcut": "shortcut.parquet",
    "journey": "journey.parquet",
    "shortcut_control": "shortcut.parquet",  # only the rows of the problems journey.parquet has
    "dpo": "preference.parquet",
    "step_dpo": "step_preference.parquet",
}
PAIRS = ("dpo", "step_dpo")  # the stages that train on preference pairs
# The stage each one continues from; when that one is not trained, the one before it (else the base model).
PARENT = {"journey": "shortcut", "shortcut_control": "shortcut", "dpo": "journey", "step_dpo": "dpo"}
# The paper's epochs: one over the shortcuts, three over the journeys (and over the control's
# shortcuts, so the two differ only in the data), DPO one; --max-steps overrides them.
EPOCHS = {"shortcut": 1, "journey": 3, "shortcut_control": 3, "dpo": 1, "step_dpo": 1}
PAPER_STAGES = ("shortcut", "journey", "dpo")


@dataclass
class TrainOptions:
    model: str
    sft_dir: Path
    out_dir: Path
    stages: tuple[str, ...] = PAPER_STAGES
    max_steps: int = -1
    batch_size: int = 8
    learning_rate: float | None = None  # None: TRL's default for the trainer (SFT 2e-5, DPO 1e-6)
    max_length: int = 2048
    seed: int = 0


def loss_mode(tokenizer) -> str:
    """Which reply-only SFT loss the chat template allows: "assistant" when it marks assistant turns with
    {% generation %} (or TRL ships a marked copy of it), else "completion" (rows split into prompt and reply).
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if template is None:
        raise ValueError("the model's tokenizer has no chat template; the SFT rows are conversations")
    if has_generation_markers(template):
        return "assistant"
    try:
        get_training_chat_template(tokenizer)
    except ValueError:  # TRL has no marked copy of this template
        return "completion"
    return "assistant"


def sft_dataset(path: Path, mode: str, problem_ids: set[str] | None = None):
    """The `messages` of an SFT file (only those problems' rows, when given), as is ("assistant") or
    split into prompt and completion."""
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(path), split="train")
    if problem_ids is not None:
        rows = rows.filter(lambda r: r["problem_id"] in problem_ids)
        if not len(rows):
            raise ValueError(f"{path} has no shortcut of the problems in journey.parquet")
    rows = rows.select_columns(["messages"])
    if mode == "assistant":
        return rows
    return rows.map(
        lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
        remove_columns=["messages"],
    )


def _common(opts: TrainOptions, stage: str, out: Path) -> dict:
    import torch

    rate = {} if opts.learning_rate is None else {"learning_rate": opts.learning_rate}
    return rate | {
        "output_dir": str(out),
        "max_steps": opts.max_steps,
        "num_train_epochs": EPOCHS[stage],
        "per_device_train_batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "seed": opts.seed,
        "logging_steps": 1,
        "save_strategy": "no",  # the stage's final model is saved once, below
        "report_to": "none",
        # TRL turns bf16 on by default; CPUs without bf16 units run it far slower than fp32.
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    }


def _trainer(opts: TrainOptions, stage: str, model: str, out: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    data = opts.sft_dir / STAGES[stage]
    if stage in PAIRS:
        from datasets import load_dataset
        from trl import DPOConfig, DPOTrainer

        pairs = load_dataset("parquet", data_files=str(data), split="train")
        pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
        args = DPOConfig(**_common(opts, stage, out))
        trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer)
        return trainer, "dpo"
    from trl import SFTConfig, SFTTrainer

    mode = loss_mode(tokenizer)
    loss = {"assistant_only_loss": True} if mode == "assistant" else {"completion_only_loss": True}
    args = SFTConfig(**_common(opts, stage, out), **loss)
    rows = sft_dataset(data, mode, _journey_problems(opts.sft_dir) if stage == "shortcut_control" else None)
    return SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer), mode


def _journey_problems(sft_dir: Path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_table(sft_dir / STAGES["journey"], columns=["problem_id"])["problem_id"].to_pylist())


def stage_files(stages) -> list[str]:
    """The sft/ files the stages read (the control also reads journey.parquet, for its problems)."""
    control = ["journey.parquet"] if "shortcut_control" in stages else []
    return list(dict.fromkeys([STAGES[s] for s in stages] + control))


def start_model(stage: str, base: str, trained: dict[str, str]) -> str:
    """The checkpoint a stage continues from: its parent's, else the nearest trained ancestor's, else base.

    >>> start_model("dpo", "base", {"shortcut": "ck/shortcut"})
    'ck/shortcut'
    >>> start_model("shortcut_control", "base", {"shortcut": "s", "journey": "j"}), start_model("journey", "base", {})
    ('s', 'base')
    """
    parent = PARENT.get(stage)
    while parent is not None and parent not in trained:
        parent = PARENT.get(parent)
    return base if parent is None else trained[parent]


def train_stage(opts: TrainOptions, stage: str, model: str) -> dict:
    """Train one stage from `model`; its model and tokenizer land in out_dir/<stage>."""
    out = opts.out_dir / stage
    trainer, mode = _trainer(opts, stage, model, out)
    result = trainer.train()
    trainer.save_model(str(out))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    steps = trainer.state.global_step
    summary = {
        "stage": stage,
        "from": model,
        "checkpoint": str(out),
        "data": str(opts.sft_dir / STAGES[stage]),
        "rows": len(trainer.train_dataset),
        "loss_mode": mode,
        "steps": steps,
        "losses": losses,
        "train_loss": result.training_loss,
        "seconds": round(result.metrics["train_runtime"], 2),
        "seconds_per_step": round(result.metrics["train_runtime"] / steps, 2) if steps else None,
    }
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"{stage}: the loss is not finite: {losses}")
    log.info("%s: %s steps, loss %s, %s s/step", stage, steps, losses[-1:], summary["seconds_per_step"])
    return summary


def train(opts: TrainOptions) -> list[dict]:
    """Run the chosen stages in the paper's order, each from the previous one's checkpoint; writes train.json."""
    unknown = set(opts.stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; the stages are {list(STAGES)}")
    needed = [STAGES[s] for s in opts.stages] + (
        ["journey.parquet"] if "shortcut_control" in opts.stages else []
    )
    missing = list(dict.fromkeys(f for f in needed if not (opts.sft_dir / f).is_file()))
    if missing:
        raise FileNotFoundError(f"{opts.sft_dir} has no {', '.join(missing)}: run the export first")
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    trained: dict[str, str] = {}
    summaries = []
    for stage in (s for s in STAGES if s in opts.stages):
        summaries.append(train_stage(opts, stage, start_model(stage, opts.model, trained)))
        trained[stage] = summaries[-1]["checkpoint"]
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}
    (opts.out_dir / "train.json").write_text(json.dumps({"options": options, "stages": summaries}, indent=2))
    return summaries
