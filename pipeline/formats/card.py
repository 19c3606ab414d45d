"""The dataset card (README.md beside the files): config, models, counts, yields, distributions, loading."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.costs import used_engines
from pipeline.formats.redact import public_config

# The config `load_dataset(<this folder>)` returns when no config name is given.
DEFAULT_FILE = "journey.parquet"

# What each file is and which trainer takes it as is.
DESCRIPTIONS = {
    "journey.parquet": "SFT on journeys (long thoughts with backtracking); TRL SFTTrainer, conversational `messages`",
    "shortcut.parquet": "SFT on shortcuts of the same trees; TRL SFTTrainer, conversational `messages`",
    "preference.parquet": "preference pairs, correct vs wrong: leaves of one tree (`source` tree) or sampled solutions (`source` outcome); TRL DPOTrainer, `prompt, chosen, rejected`",
    "step_preference.parquet": "step-level pairs (process-level DPO): at one node, a step that leads to a verified correct leaf vs a sibling whose finished paths all fail; TRL DPOTrainer, `prompt, chosen, rejected` (the path so far, then the step)",
    "stepwise.parquet": "stepwise supervision from root-to-leaf paths; TRL stepwise format, `prompt, completions, labels`, and `soft_labels` (each step's share of verified correct leaves beneath it)",
    "revision.parquet": "revision trajectories (wrong attempts, then a correct one); TRL SFTTrainer, `prompt, completion`",
    "o1_journey.parquet": "the GAIR O1-Journey release layout, `question, longCOT` (the thought, then `#### <answer>`), `answer`",
    "journey_sharegpt.parquet": "journeys for LLaMA-Factory (sharegpt, see dataset_info.json)",
    "shortcut_sharegpt.parquet": "shortcuts for LLaMA-Factory (sharegpt, see dataset_info.json)",
}


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _empty_files(empty: list[str]) -> str:
    if not empty:
        return ""
    return f"\nEmpty, so not offered above: {', '.join(f'`{f}`' for f in empty)}. See the causes below.\n"


def _causes(causes: list[dict]) -> str:
    if not causes:
        return ""
    rows = [
        (c["cause"], f"{c['count']} of {c['of']} {c['unit']}", f"`{c['setting']}`", c["advice"])
        for c in causes
    ]
    return "\nWhat cost yield:\n\n" + _table(("cause", "count", "setting", "what to change"), rows) + "\n"


def _runtime(runtime: dict) -> str:
    """Where the in-process engines ran (device, dtype, CPU and its instruction sets), as a table."""
    if not runtime:
        return ""

    def isa(flags: list) -> str:  # jobs on machines that differ: one list per machine
        return " / ".join(map(isa, flags)) if any(isinstance(f, list) for f in flags) else ", ".join(flags)

    rows = [
        (
            name,
            f.get("device", ""),
            f.get("dtype", ""),
            f.get("cpu", ""),
            isa(f.get("cpu_isa") or []),
            f.get("engine_process", ""),
        )
        for name, f in runtime.items()
    ]
    header = ("engine", "device", "dtype", "cpu", "cpu instruction sets", "engine core in its own process")
    return "Ran on:\n\n" + _table(header, rows) + "\n"


def default_file(parquet: list[str]) -> str | None:
    """The file `load_dataset(folder)` loads: the journeys, or the first file with rows when there are none.

    >>> default_file(["shortcut.parquet", "journey.parquet"]), default_file(["stepwise.parquet"]), default_file([])
    ('journey.parquet', 'stepwise.parquet', None)
    """
    # With several configs and none marked default, `load_dataset(folder)` refuses to pick one.
    return DEFAULT_FILE if DEFAULT_FILE in parquet else next(iter(parquet), None)


def _config_entry(name: str, default: bool) -> dict:
    entry = {"config_name": name.removesuffix(".parquet"), "data_files": [{"split": "train", "path": name}]}
    return entry | {"default": True} if default else entry


def _loading(parquet: list[str], sft_dir: Path) -> str:
    """Python that loads each file from any working directory (the folder's absolute path, its configs)."""
    lines = [
        "from datasets import load_dataset",
        "",
        "# This folder as the run wrote it; for a copy pushed with export.push_to_hub, its dataset repo id.",
        f"SFT = {str(sft_dir)!r}",
        "",
    ]
    default = default_file(parquet)
    for f in parquet:
        name = "" if f == default else f", {f.removesuffix('.parquet')!r}"
        note = " (the default config)" if f == default else ""
        lines.append(
            f'{f.removesuffix(".parquet")} = load_dataset(SFT{name}, split="train")  # {DESCRIPTIONS[f]}{note}'
        )
    return "\n".join(lines)


def _costs(costs: dict) -> str:
    """What the run cost per stage and engine, from the engines' `prices`; "" when none has prices."""
    if not costs or not costs.get("prices"):
        return ""
    rows = [
        (
            stage,
            name,
            e["input_tokens"],
            e["output_tokens"],
            e["usd"],
            e["saved_usd"],
            e["retries"],
            e["failed_requests"],
        )
        for stage, name, e in used_engines(costs)
    ]
    t = costs["total"]
    header = (
        "stage",
        "engine",
        "input tokens",
        "output tokens",
        "USD",
        "saved by the cache, USD",
        "retries",
        "failed",
    )
    return f"""## Cost

Prices (USD per million tokens): {costs["prices"]}; unpriced: {costs["unpriced_engines"] or "none"}.
Total {t["usd"]} USD, {costs["per_journey_usd"]} per accepted journey; the response cache saved {t["saved_usd"]}
USD of generated tokens. Every reply the engine returned is counted, also those the pipeline then
rejected; calls that returned nothing are counted as retries and failures, unpriced.

{_table(header, rows)}
"""


def dataset_card(config: dict, stats: dict, sft_dir: str | Path) -> str:
    """The card for the files in sft_dir; its loading code names that folder by its absolute path."""
    config = public_config(config)
    exports: dict[str, int] = stats["exports"]
    # Only files with rows are offered; an empty one is named as empty, never advertised.
    parquet = [f for f in exports if f.endswith(".parquet") and exports[f]]
    empty = [f for f in exports if f.endswith(".parquet") and not exports[f]]
    report = stats.get("yield_report") or {}
    front = {
        "configs": [_config_entry(f, f == default_file(parquet)) for f in parquet],
        "tags": ["journey-learning", "reasoning", "trl"],
    }
    engines = [
        (name, e.get("kind"), e.get("model"), e.get("base_url", "in-process"))
        for name, e in config["engines"].items()
    ]
    lengths = stats["thought_lengths"]
    backtracks = stats["backtracks_per_journey"]
    return f"""---
{yaml.safe_dump(front, sort_keys=False)}---

# Journey-learning data: run `{config["run"]}`

Built from on-policy reasoning trees: a policy samples steps, a scorer prunes them, answers are
checked; long thoughts are derived from each tree (journeys with backtracking, and shortcuts).

## Models and endpoints

{_table(("engine", "kind", "model", "endpoint"), engines)}

{_runtime(stats.get("runtime") or {})}
Policy: `{config["policy"]["engine"]}`, pruning: `{config["pruning"]["scorer"]}` (K={config["pruning"]["keep"]}),
critic: `{config["critic"]["engine"]}`, polish: `{config["polish"]["engine"]}` (enabled: {config["polish"]["enabled"]}).

## Files

{_table(("file", "rows", "what"), [(f, exports[f], DESCRIPTIONS[f]) for f in parquet]) if parquet else "No file has rows."}
{_empty_files(empty)}
## Yields

{report.get("message", "")}

{_table(("measure", "value"), [(k, v) for k, v in stats["yields"].items()])}
{_causes(report.get("causes", []))}
{_costs(stats.get("costs") or {})}

## Lengths and backtracks

{_table(("thoughts", "n", "chars min", "chars mean", "chars max", "steps mean", "steps max"), [(k, *v.values()) for k, v in lengths.items()])}

Backtracks per journey: mean {backtracks["mean"]}, max {backtracks["max"]}, histogram {backtracks["histogram"]}.

## Loading

```python
{_loading(parquet, Path(sft_dir).resolve())}
```

LLaMA-Factory: put this folder in its `data/` and use the entries of `dataset_info.json`.

## Config

```yaml
{yaml.safe_dump(config, sort_keys=False)}```
"""
