"""Sampling seeds derived from what a request is for, not from the order requests run in."""

from __future__ import annotations

import hashlib


def request_seed(*parts: object) -> int:
    """A 31-bit seed from the run's seed and the request's address (problem, node, attempt, ...).

    On vLLM's CPU kernels a request's text can still change with the batch it shares, so
    byte-identical reruns come from the response cache.

    >>> request_seed(1234, "pens", "0.1") == request_seed(1234, "pens", "0.1") != request_seed(1234, "pens", "0.2")
    True
    """
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
