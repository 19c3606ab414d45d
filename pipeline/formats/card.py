"""The dataset card (README.md beside the files): config, models, counts, yields, distributions, loading."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import yaml

_SECRET_KEY = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)

# What each file is and which trainer takes it as is.
DESCRIPTIONS = {
    "journey.parquet": "SFT on journeys (long thoughts with backtracking); TRL SFTTrainer, conversational `messages`",
    "shortcut.parquet": "SFT on shortcuts of the same trees; TRL SFTTrainer, conversational `messages`",
    "preference.parquet": "preference pairs, correct vs wrong leaf of one tree; TRL DPOTrainer, `prompt, chosen, rejected`",
    "stepwise.parquet": "stepwise supervision from root-to-leaf paths; TRL stepwise format, `prompt, completions, labels`",
    "revision.parquet": "revision trajectories (wrong attempts, then a correct one); TRL SFTTrainer, `prompt, completion`",
    "o1_journey.parquet": "the GAIR O1-Journey release layout, `question, longCOT, answer`",
    "journey_sharegpt.parquet": "journeys for LLaMA-Factory (sharegpt, see dataset_info.json)",
    "shortcut_sharegpt.parquet": "shortcuts for LLaMA-Factory (sharegpt, see dataset_info.json)",
}


def _scrub_url(url: str) -> str:
    """
    >>> _scrub_url("https://user:pw@host:8000/v1")
    'https://host:8000/v1'
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def public_config(value, key: str = ""):
    """The config with anything that could hold a secret removed; `*_env` names of variables stay.

    >>> public_config({"base_url": "http://u:p@h/v1", "api_key_env": "K", "extra_body": {"api_key": "x"}})
    {'base_url': 'http://h/v1', 'api_key_env': 'K', 'extra_body': {'api_key': '<redacted>'}}
    """
    if isinstance(value, dict):
        return {k: public_config(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [public_config(v, key) for v in value]
    if _SECRET_KEY.search(key) and not key.endswith("_env"):
        return "<redacted>"
    if isinstance(value, str) and "://" in value:
        return _scrub_url(value)
    return value


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


def dataset_card(config: dict, stats: dict) -> str:
    config = public_config(config)
    exports: dict[str, int] = stats["exports"]
    # Only files with rows are offered; an empty one is named as empty, never advertised.
    parquet = [f for f in exports if f.endswith(".parquet") and exports[f]]
    empty = [f for f in exports if f.endswith(".parquet") and not exports[f]]
    report = stats.get("yield_report") or {}
    front = {
        "configs": [
            {"config_name": f.removesuffix(".parquet"), "data_files": [{"split": "train", "path": f}]}
            for f in parquet
        ],
        "tags": ["journey-learning", "reasoning", "trl"],
    }
    engines = [
        (name, e.get("kind"), e.get("model"), e.get("base_url", "in-process"))
        for name, e in config["engines"].items()
    ]
    lengths = stats["thought_lengths"]
    backtracks = stats["backtracks_per_journey"]
    loading = "\n".join(
        f'load_dataset("parquet", data_files="{f}", split="train")  # {DESCRIPTIONS[f]}' for f in parquet
    )
    return f"""---
{yaml.safe_dump(front, sort_keys=False)}---

# Journey-learning data: run `{config["run"]}`

Built from on-policy reasoning trees: a policy samples steps, a scorer prunes them, answers are
checked; long thoughts are derived from each tree (journeys with backtracking, and shortcuts).

## Models and endpoints

{_table(("engine", "kind", "model", "endpoint"), engines)}

Policy: `{config["policy"]["engine"]}`, pruning: `{config["pruning"]["scorer"]}` (K={config["pruning"]["keep"]}),
critic: `{config["critic"]["engine"]}`, polish: `{config["polish"]["engine"]}` (enabled: {config["polish"]["enabled"]}).

## Files

{_table(("file", "rows", "what"), [(f, exports[f], DESCRIPTIONS[f]) for f in parquet]) if parquet else "No file has rows."}
{_empty_files(empty)}
## Yields

{report.get("message", "")}

{_table(("measure", "value"), [(k, v) for k, v in stats["yields"].items()])}
{_causes(report.get("causes", []))}

## Lengths and backtracks

{_table(("thoughts", "n", "chars min", "chars mean", "chars max", "steps mean", "steps max"), [(k, *v.values()) for k, v in lengths.items()])}

Backtracks per journey: mean {backtracks["mean"]}, max {backtracks["max"]}, histogram {backtracks["histogram"]}.

## Loading

```python
from datasets import load_dataset

{loading}
```

LLaMA-Factory: put this folder in its `data/` and use the entries of `dataset_info.json`.

## Config

```yaml
{yaml.safe_dump(config, sort_keys=False)}```
"""
