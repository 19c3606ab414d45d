"""p2_vs_naive: how much of batching's gain the tree search keeps, against a one-request-at-a-time search.

The gain a perfect scheduler could get is the ceiling: requests sent one by one over the same requests
sent as one raw batch, per generated token. The figure is the per-token speed-up of our search over
the naive one, divided by that ceiling, all on the same engine in the same run. The naive search runs
on a few problems only: one request in flight costs the same per token however many problems wait.
"""

from __future__ import annotations

import random

from benchmarks import Figure
from benchmarks.session import OneAtATime, Session, raw


def run(session: Session, problems: int, sample: int) -> Figure:
    ours, batch_s, batch_tokens = session.reference()
    naive = session.build(session.problems[:problems], wrap=OneAtATime)
    picked = random.Random(0).sample(ours.requests, min(sample, len(ours.requests)))
    seq_s, seq_tokens = raw(session.engine, picked, one_batch=False)
    ceiling = (seq_s / seq_tokens) / (batch_s / batch_tokens)
    per_token = (naive.wall_s / naive.tokens) / (ours.wall_s / ours.tokens)
    return Figure(
        "p2_vs_naive",
        round(per_token / ceiling, 3),
        ">= 0.8",
        [
            f"naive (one request in flight, {problems} problems): {naive.tokens} tokens in {naive.wall_s:.1f} s; "
            f"ours ({len(session.problems)} problems): {ours.tokens} tokens in {ours.wall_s:.1f} s: "
            f"{per_token:.2f}x per token",
            f"ceiling: {len(picked)} of ours' requests one by one {seq_s:.1f} s ({seq_tokens} tokens) vs all "
            f"{len(ours.requests)} as one raw batch {batch_s:.1f} s ({batch_tokens} tokens): {ceiling:.2f}x per token",
        ],
    )
