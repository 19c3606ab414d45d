"""p6_shared_cpu: tree-building tokens/s while another process keeps one core busy, over the same build
on an otherwise idle machine. A fair share of 2 cores is 0.5; the target leaves room for the search's
own work (event loop, answer checks) competing with the engine's threads."""

from __future__ import annotations

import subprocess
import sys

from benchmarks import Figure
from benchmarks.session import Session

# One core's worth of work that never sleeps, as a second job on the machine would be.
BUSY_LOOP = "while True: pass"


def run(session: Session) -> Figure:
    idle = session.build()
    hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        loaded = session.build()
    finally:
        hog.kill()
        hog.wait()
    idle_rate, loaded_rate = idle.tokens / idle.wall_s, loaded.tokens / loaded.wall_s
    return Figure(
        "p6_shared_cpu",
        round(loaded_rate / idle_rate, 3),
        ">= 0.4",
        [
            f"idle: {idle.tokens} tokens in {idle.wall_s:.1f} s ({idle_rate:.1f} tok/s, engine busy "
            f"{idle.engine_s / idle.wall_s:.0%}); one core busy: {loaded.tokens} tokens in "
            f"{loaded.wall_s:.1f} s ({loaded_rate:.1f} tok/s, engine busy {loaded.engine_s / loaded.wall_s:.0%})",
        ],
    )
