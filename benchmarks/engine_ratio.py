"""p1_engine_ratio: generated tokens/s of a tree build over those of the same engine fed the same batches raw."""

from __future__ import annotations

from time import perf_counter

from benchmarks import Figure
from benchmarks.session import Session
from pipeline.engines import Request


def replay(engine, batches: list[list[Request]]) -> tuple[float, int]:
    """Seconds inside vllm.LLM.generate and tokens generated, sending these batches straight to it.

    Prompts and sampling parameters are prepared before the clock starts: only the engine is timed.
    """
    prepared = [([engine.render(r) for r in b], [engine._sampling(r) for r in b]) for b in batches]
    engine.llm.reset_prefix_cache()
    seconds, tokens = 0.0, 0
    for prompts, params in prepared:
        start = perf_counter()
        outputs = engine.llm.generate(prompts, params, use_tqdm=False)
        seconds += perf_counter() - start
        tokens += sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return seconds, tokens


def run(session: Session, rounds: int) -> Figure:
    engine = session.engine
    ours, raw = [], []
    # Builds and replays alternate, and each side keeps its best round: a test run sharing the
    # cores slows whichever side it overlaps, and the best round is the one it overlapped least.
    for _ in range(rounds):
        build = session.new_build()
        ours.append(build.tokens / build.wall_s)
        seconds, tokens = replay(engine, build.batches)
        raw.append(tokens / seconds)
    build = session.builds[0]
    single_s, single_tokens = replay(engine, [[r for b in build.batches for r in b]])
    best_ours, best_raw = max(ours), max(raw)
    same = all(b.nodes == build.nodes for b in session.builds)
    return Figure(
        "p1_engine_ratio",
        round(best_ours / best_raw, 3),
        ">= 0.9",
        [
            f"first build: {build.tokens} tokens in {build.calls} batches of "
            f"{', '.join(str(len(b)) for b in build.batches)} requests",
            "tok/s per round, build vs raw replay of its batches: "
            + ", ".join(f"{o:.1f} vs {r:.1f}" for o, r in zip(ours, raw)),
            f"best build {best_ours:.1f} tok/s (whole TreeBuilder.build), best raw replay {best_raw:.1f} tok/s",
            # All requests in one batch ignore that level k+1 needs level k's answers: an upper
            # bound no level-by-level tree search can reach, shown for scale only.
            f"vs all {sum(len(b) for b in build.batches)} requests of the first build as one raw batch "
            f"(upper bound, unreachable level by level): {single_tokens / single_s:.1f} tok/s, "
            f"ratio {best_ours / (single_tokens / single_s):.3f}",
            "builds (nodes, tokens): "
            + ", ".join(f"({len(b.nodes)}, {b.tokens})" for b in session.builds)
            + ("; all the same trees" if same else "; trees differ between builds, see p2"),
        ],
    )
