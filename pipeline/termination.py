"""How a job's process ends: cancelled (SIGTERM from Snakemake or SLURM's scancel), it closes its engines
instead of dying with them running; finished, it skips the interpreter's teardown of torch and vLLM."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

# After the engines closed: how long the processes they started get to exit before SIGKILL.
GRACE_S = 5.0


def _raise(signum: int, frame) -> None:
    # Restore the default first: a second SIGTERM while closing ends the process at once.
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _descendants() -> list:
    """The job's child processes but multiprocessing's resource tracker, which ignores SIGTERM and ends
    by itself once the job's process exits, unlinking the semaphores and shared memory the job leaked
    (killed, it would leak them; waited for, it held up every cancel by the whole grace period)."""
    try:
        import psutil  # vLLM's own dependency; without vLLM no engine process exists to reap
    except ImportError:
        return []
    children = psutil.Process(os.getpid()).children(recursive=True)
    return [p for p in children if not _is_resource_tracker(p)]


def _is_resource_tracker(process) -> bool:
    import psutil

    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _reap(processes: list) -> None:
    """SIGTERM, then SIGKILL, whatever child processes are still running."""
    import psutil

    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(processes, timeout=GRACE_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=GRACE_S)


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """Within: SIGTERM raises SystemExit in the main thread, so every `with` block unwinds (engines shut
    their engine-core and worker processes, answer-check workers stop; outputs are only ever written
    whole, and the response cache holds every answered call). On the way out after a SIGTERM, any
    process the job started that still runs is ended, so a cancelled job holds no memory or GPU."""
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            left = _descendants()
            if left:
                log.warning("cancelled: ending %d process(es) the job started", len(left))
                _reap(left)
            log.warning("cancelled by SIGTERM; rerun the job to resume from its response cache")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_process(code: int) -> None:
    """End the process with `code`. Where torch was imported (vLLM, training), the exit handlers run and
    the standard streams are flushed, then the process ends without the interpreter's teardown: freeing
    torch's and vLLM's modules takes 2-3 s of CPU per model job and writes nothing (every output and
    cache write is closed by then). While a thread that is not a daemon still runs, the exit is the
    normal one, which waits for it."""
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "torch" not in sys.modules or busy:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
