"""p3_overhead: share of a real tree build's wall time spent outside the engine."""

from __future__ import annotations

from benchmarks import Figure
from benchmarks.session import Session


def run(session: Session, rounds: int) -> Figure:
    builds = session.builds_at_least(rounds)
    wall = sum(b.wall_s for b in builds)
    llm = sum(b.llm_s for b in builds)
    stack = sum(b.generate_s - b.llm_s for b in builds)
    checks = sum(b.check_s for b in builds)
    builder = wall - llm - stack - checks
    return Figure(
        "p3_overhead",
        round((wall - llm) / wall, 5),
        "< 0.01",
        [
            f"{len(builds)} builds, {wall:.2f} s wall, {llm:.2f} s inside vllm.LLM.generate",
            f"outside it: engine stack (response cache, prompt rendering, outputs) {stack * 1e3:.1f} ms, "
            f"answer checks {checks * 1e3:.1f} ms, tree builder (prompts, parsing, pruning) {builder * 1e3:.1f} ms",
        ],
    )
