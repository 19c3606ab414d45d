"""p4_overlap: the policy in-process and the critic an endpoint away (a proxy adding a fixed latency
per call): wall time of the level-synchronous search over the streaming one.

On a CPU machine the two engines would fight over the same cores, which no real setup (a GPU policy,
a critic behind an API) does: each gets cores of its own here, as it would on its own machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from benchmarks import Figure
from benchmarks.latency_proxy import LatencyProxy, local_vllm_server
from benchmarks.level_sync import LevelSyncBuilder
from benchmarks.session import Session
from pipeline.config import load
from pipeline.engines.openai_engine import OpenAIEngine
from pipeline.search.builder import TreeBuilder
from pipeline.testing.vllm_server import SERVED_MODEL_NAME


@contextlib.contextmanager
def pinned(cores: str) -> Iterator[None]:
    """vLLM engines started inside run their CPU threads on these cores only ("0", "1", "0-3")."""
    before = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cores
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND")
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = before


def split_cores() -> tuple[str, str]:
    """Two disjoint core sets, the policy's and the critic server's."""
    n = os.cpu_count() or 2
    half = max(1, n // 2)
    return (f"0-{half - 1}" if half > 1 else "0"), (f"{half}-{n - 1}" if n - half > 1 else str(half))


def run(problems: int, width: int, depth: int, delay_s: float) -> Figure:
    policy_cores, critic_cores = split_cores()
    # The policy's engine core in a process of its own, as on a GPU node (engine_process: null there):
    # in the job's process, pinning its threads to the policy's cores pins the whole process with them,
    # the event loop and the critic's HTTP calls included (0.67 instead of 1.20 on the AVX2 EPYC).
    session = Session(problems, width, depth, engine_process=True)
    walls, calls = {}, {}
    with pinned(policy_cores):
        _ = session.engine  # loaded and warmed up on its own cores
    with (
        pinned(critic_cores),
        local_vllm_server() as upstream,
        LatencyProxy(upstream, delay_s).running() as proxy,
    ):
        endpoint = {
            "kind": "openai",
            "base_url": proxy.url,
            "model": SERVED_MODEL_NAME,
            "max_concurrency": 64,
        }
        cfg = load(
            overrides={
                "engines": {"endpoint": endpoint},
                "policy": {"width": width, "max_depth": depth},
                "critic": {"engine": "endpoint"},
            }
        )
        critic = OpenAIEngine(cfg.engines["endpoint"])
        # The server's first structured-output request compiles the critic's grammar: paid here.
        session.build(session.problems[:1], cfg=cfg, critic_engine=critic)
        for name, builder in (("streaming", TreeBuilder), ("level-synchronous", LevelSyncBuilder)):
            before = proxy.calls
            build = session.build(builder=builder, cfg=cfg, critic_engine=critic)
            walls[name], calls[name] = build.wall_s, proxy.calls - before
        critic.close()
    session.close()
    # Level by level, the policy's busy time and the critic's (calls, latency) add up; no schedule
    # can beat the longer of the two.
    level, policy_s = walls["level-synchronous"], build.engine_s
    bound = level / max(policy_s, level - policy_s)
    return Figure(
        "p4_overlap",
        round(walls["level-synchronous"] / walls["streaming"], 2),
        ">= 1.5",
        [
            f"{problems} problems, width {width}, depth {depth}; policy (its engine core in a process of its "
            f"own) on cores {policy_cores}, "
            f"critic on a local vLLM server on cores {critic_cores} behind a proxy adding {delay_s:g} s per call",
            ", ".join(f"{name} {walls[name]:.1f} s ({calls[name]} critic calls)" for name in walls),
            f"level-synchronous: policy engine busy {policy_s:.1f} s, critic (calls and latency) the other "
            f"{level - policy_s:.1f} s; a perfect overlap of the two could reach {bound:.2f}",
        ],
    )
