"""`python -m benchmarks [--quick] [--only NAME]`: one readable line per figure, then one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import sys

# Before vLLM is imported: its INFO lines and per-weight load warnings would bury the figures.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from benchmarks import derive, engine_ratio, naive, overhead, rerun  # noqa: E402
from benchmarks.session import Session  # noqa: E402

# Sized so the whole run stays within ~8 minutes on a 2-core CPU; the naive loop dominates.
FULL = {"problems": 6, "width": 3, "depth": 3, "rounds": 3, "derive_trees": 500}
QUICK = {"problems": 2, "width": 2, "depth": 2, "rounds": 1, "derive_trees": 100}

# In run order: CPU-only derivation before the engine loads, the slow naive loop last.
FIGURES = {
    "derive_trees_per_s": lambda s, size: derive.run(size["derive_trees"]),
    "p1_engine_ratio": lambda s, size: engine_ratio.run(s, size["rounds"]),
    "p3_overhead": lambda s, size: overhead.run(s, size["rounds"]),
    "rerun_engine_calls": lambda s, size: rerun.run(s),
    "p2_vs_naive": lambda s, size: naive.run(s, size["rounds"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run on fewer, smaller trees")
    parser.add_argument("--only", choices=sorted(FIGURES), help="run one figure")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    session = Session(size["problems"], size["width"], size["depth"])
    results = {}
    try:
        for name, measure in FIGURES.items():
            if args.only and name != args.only:
                continue
            figure = measure(session, size)
            print(figure.line(), flush=True)
            for detail in figure.details:
                print(f"  {detail}", flush=True)
            results[name] = figure.value
    finally:
        session.close()
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
