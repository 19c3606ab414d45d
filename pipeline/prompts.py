"""Prompt templates from prompts/*.yaml turned into chat messages.

Slots are filled by plain text replacement, never str.format: problems and model text are full of
braces (\\boxed{...}, sets, JSON) that must pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml


def fill(template: str, **slots: str) -> str:
    """Replace each {name} slot in one pass, so a value containing "{other}" is never re-filled.

    >>> fill("{a} and {b}", a="{b}", b="x")
    '{b} and x'
    """
    out, i = [], 0
    while i < len(template):
        for name, value in slots.items():
            key = "{" + name + "}"
            if template.startswith(key, i):
                out.append(value)
                i += len(key)
                break
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


@cache
def load_yaml(path: str) -> dict:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"prompt file {path}: expected a mapping")
    return data


def _with_keys(path: str, *keys: str) -> dict:
    """The prompt file, which must hold `keys`."""
    data = load_yaml(path)
    for key in keys:
        if key not in data:
            raise ValueError(f"prompt file {path}: missing key {key!r}")
    return data


@dataclass(frozen=True)
class PolicyPrompt:
    path: str

    def messages(self, problem: str, steps: list[str], delimiter: str) -> list[dict]:
        """Few-shot chat whose last assistant turn holds the steps so far, ready to continue."""
        data = _with_keys(self.path, "system", "examples", "user")
        msgs = [{"role": "system", "content": data["system"]}]
        for ex in data["examples"]:
            msgs.append({"role": "user", "content": fill(data["user"], problem=ex["problem"])})
            msgs.append({"role": "assistant", "content": delimiter.join(ex["steps"])})
        msgs.append({"role": "user", "content": fill(data["user"], problem=problem)})
        partial = "".join(step + delimiter for step in steps)
        msgs.append({"role": "assistant", "content": partial})
        return msgs


@dataclass(frozen=True)
class CriticPrompt:
    path: str

    def messages(self, problem: str, previous: list[str], step: str) -> list[dict]:
        data = _with_keys(self.path, "system", "user", "schema")
        prev = "\n".join(f"{i}. {s}" for i, s in enumerate(previous, 1)) or data.get(
            "no_previous_steps", "(none)"
        )
        user = fill(data["user"], problem=problem, previous_steps=prev, step=step)
        return [{"role": "system", "content": data["system"]}, {"role": "user", "content": user}]

    def schema(self) -> dict:
        return load_yaml(self.path)["schema"]


@dataclass(frozen=True)
class PolishPrompt:
    path: str

    def messages(self, problem: str, thought: str) -> list[dict]:
        data = _with_keys(self.path, "system", "user")
        user = fill(data["user"], problem=problem, thought=thought)
        return [{"role": "system", "content": data["system"]}, {"role": "user", "content": user}]
