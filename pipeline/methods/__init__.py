"""Ways to build long thoughts besides the tree walk (seed 003, "How to construct long thoughts?").

Each method is a module with `build(cfg, problems, pool, checker) -> (rows, stats)`: thought rows in
THOUGHT_SCHEMA for one shard's problems, and the method's stats. Modules load on use, so a run pays
only for the methods it names in `thoughts.methods`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS = {
    "propose-critique": "pipeline.methods.propose_critique",
    "debate": "pipeline.methods.debate",
    "annotation": "pipeline.methods.annotation",
    "outcome": "pipeline.methods.outcome",
}


def method_module(name: str) -> ModuleType:
    if name not in METHODS:
        raise ValueError(f"unknown thoughts method {name!r} (known: tree, {', '.join(METHODS)})")
    return importlib.import_module(METHODS[name])
