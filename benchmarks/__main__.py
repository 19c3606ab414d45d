"""`python -m benchmarks [--quick] [--only NAME]`: one readable line per figure, then one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import sys

# Before vLLM is imported: its INFO lines and per-weight load warnings would bury the figures.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from benchmarks import derive, dtype_speed, naive, overlap, rerun, rss_growth, shared_cpu, stream_ratio  # noqa: E402
from benchmarks.session import Session  # noqa: E402
from pipeline.termination import cancellable  # noqa: E402

# Sized for a 2-core CPU: 21 min 27 s on an AVX2-only EPYC (float32), 9 min 51 s on an AMX Intel (bfloat16).
FULL = {
    "problems": 16,
    "width": 3,
    "depth": 3,
    "rounds": 1,
    "naive_problems": 3,
    "sequential_sample": 40,
    "overlap_problems": 16,
    "delay_s": 1.0,
    "rss_multiplier": 10,
    "derive_trees": 500,
}
QUICK = {
    "problems": 4,
    "width": 2,
    "depth": 2,
    "rounds": 1,
    "naive_problems": 1,
    "sequential_sample": 8,
    "overlap_problems": 2,
    "delay_s": 0.5,
    "rss_multiplier": 2,
    "derive_trees": 100,
}

# In run order: CPU-only derivation before the engine loads; the figures that start engines of their
# own (a server, subprocess jobs) after the shared one is closed.
FIGURES = {
    "derive_trees_per_s": lambda s, size: derive.run(size["derive_trees"]),
    "dtype_auto_ratio": lambda s, size: dtype_speed.run(),
    "p1_stream_ratio": lambda s, size: stream_ratio.run(s, size["rounds"]),
    "rerun_engine_calls": lambda s, size: rerun.run(s),
    "p2_vs_naive": lambda s, size: naive.run(s, size["naive_problems"], size["sequential_sample"]),
    "p6_shared_cpu": lambda s, size: shared_cpu.run(s),
    "p4_overlap": lambda s, size: overlap.run(
        size["overlap_problems"], size["width"], size["depth"], size["delay_s"]
    ),
    "p5_rss_growth": lambda s, size: rss_growth.run(size["rss_multiplier"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run on fewer, smaller trees")
    parser.add_argument("--only", choices=sorted(FIGURES), help="run one figure")
    parser.add_argument(
        "--max-num-seqs", type=int, help="sequences the shared engine runs at once (default: the config's)"
    )
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    session = Session(size["problems"], size["width"], size["depth"], args.max_num_seqs)
    results = {}
    try:
        for name, measure in FIGURES.items():
            if args.only and name != args.only:
                continue
            if name in ("p4_overlap", "p5_rss_growth"):
                session.close()
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
    with cancellable():  # a killed run ends the engines and servers it started
        sys.exit(main())
