"""Ways to build long thoughts (seed 003, "How to construct long thoughts?"), by config name.

Each method is a module whose READS says what it builds from. "problems": `build(cfg, problems, pool,
checker) -> (rows, stats)`, thought rows in THOUGHT_SCHEMA for one shard's problems and the method's
stats. "trees": the tree walk, from the shard's grown trees (pipeline/methods/tree.py). Modules load
on use, so a run pays only for the methods it names in `thoughts.methods`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS = {
    "tree": "pipeline.methods.tree",
    "propose-critique": "pipeline.methods.propose_critique",
    "debate": "pipeline.methods.debate",
    "annotation": "pipeline.methods.annotation",
    "outcome": "pipeline.methods.outcome",
}


def method_module(name: str) -> ModuleType:
    if name not in METHODS:
        raise ValueError(f"unknown thoughts method {name!r} (known: {', '.join(METHODS)})")
    return importlib.import_module(METHODS[name])
