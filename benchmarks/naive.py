"""p2_vs_naive: wall time of a per-node sequential tree search over ours: same seeded requests, same engine."""

from __future__ import annotations

import dataclasses
from time import perf_counter

from benchmarks import Figure
from benchmarks.session import Session
from pipeline.scorers.critic import Critic
from pipeline.stages.trees import TreeBuilder


class NaiveTreeBuilder(TreeBuilder):
    """The research-script pattern: one policy call per open node for its w children, then one
    critic call per child, one after another.

    It sends the batched builder's requests (each carries its node's seed, and node ids are
    assigned in the same order), so on a batch-invariant engine both grow the same trees.
    """

    def _expand(self, frontier, depth):
        created = []
        for item in frontier:
            created += super()._expand([item], depth)
        return created

    def _score(self, created):
        for item in created:
            super()._score([item])


def _compare(naive, ours) -> str:
    if naive == ours:
        return f"yes ({len(ours)} nodes, every step, verdict and pruning identical)"
    same = sum(a.step == b.step for a, b in zip(naive, ours))
    # Seeds match, but vLLM's kernels are not batch-invariant: a seeded request sent alone samples
    # different text than the same request inside a batch (measured on CPU: about 1 in 9 policy
    # samples and 4 in 9 critic replies differ), and every later level inherits the difference.
    # Two batched builds can differ too, probably because stop strings are caught in vLLM's
    # front-end process, so the step at which a finished sequence leaves the batch depends on timing.
    return (
        f"NO ({len(naive)} vs {len(ours)} nodes, {same} steps identical in node order): same seeded "
        "requests, but vLLM output depends on batch composition, so the per-node search grows other trees"
    )


def run(session: Session, rounds: int) -> Figure:
    ours = min(session.builds_at_least(rounds), key=lambda b: b.wall_s)
    engine = session.engine
    builder = NaiveTreeBuilder(session.cfg, engine, Critic(engine, session.cfg.critic), session.checker)
    before = dataclasses.replace(engine.stats)
    engine.llm.reset_prefix_cache()
    start = perf_counter()
    nodes = builder.build(session.problems)
    wall = perf_counter() - start
    calls = engine.stats.calls - before.calls
    tokens = engine.stats.completion_tokens - before.completion_tokens
    outside = 1 - (engine.stats.engine_s - before.engine_s) / wall
    per_token = (wall / tokens) / (ours.wall_s / ours.tokens)
    return Figure(
        "p2_vs_naive",
        round(wall / ours.wall_s, 2),
        ">= 5",
        [
            f"naive: {calls} engine calls, {tokens} tokens in {wall:.1f} s ({tokens / wall:.1f} tok/s); "
            f"ours: {ours.calls} calls, {ours.tokens} tokens in {ours.wall_s:.1f} s ({ours.tokens / ours.wall_s:.1f} tok/s); "
            f"{len(session.problems)} problems, width {session.cfg.policy.width}, depth {session.cfg.policy.max_depth}",
            f"per generated token, naive over ours: {per_token:.2f}; naive spends {outside:.1%} of its wall outside the engine",
            f"same trees: {_compare(nodes, ours.nodes)}",
        ],
    )
