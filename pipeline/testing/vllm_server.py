"""Start a real vLLM OpenAI-compatible server on 127.0.0.1, and always stop it again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.engines.vllm_engine import auto_kv_tokens, kv_cache_bytes, resolve_dtype
from pipeline.model_files import cache_root

SERVED_MODEL_NAME = "smollm2"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


MAX_MODEL_LEN = 4096


def served_engine(base_url: str) -> dict:
    """An engine entry of the config that talks to a server `vllm_server` started."""
    return {"kind": "openai", "base_url": base_url, "model": SERVED_MODEL_NAME}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def vllm_server(
    model_path: str,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    max_num_seqs: int = 16,
) -> Iterator[str]:
    """Serve model_path as "smollm2" on 127.0.0.1; yields http://127.0.0.1:PORT/v1.

    Its KV cache is sized as `kv_cache_gib: auto` sizes the pipeline's: sized by a fraction of
    memory instead, vLLM on CPU refuses to start beside another instance ("Available memory on
    node 0 ... less than requested")."""
    port = port or free_port()
    dtype = resolve_dtype("auto")  # as the in-process engine: float32 on a CPU without bfloat16
    env = dict(os.environ)
    # Same CPU defaults as the in-process engine: both cores, compile cache in the workspace.
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env.setdefault("VLLM_CACHE_ROOT", str(cache_root() / "vllm"))
    cmd = [
        # The `vllm` console script of vllm-cpu cannot find its own package metadata.
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        SERVED_MODEL_NAME,
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--kv-cache-memory-bytes",
        str(kv_cache_bytes(model_path, auto_kv_tokens(max_num_seqs, MAX_MODEL_LEN), dtype)),
        "--max-num-seqs",
        str(max_num_seqs),
        "--enforce-eager",
        "--dtype",
        dtype,
        # Seeded requests crash vLLM's CPU runner when a chunked prefill is cut short
        # (see pipeline/engines/vllm_engine.py); the pipeline seeds every node.
        "--no-enable-chunked-prefill",
        *extra_args,
    ]
    # Kept after the run: pytest does not pass a failing test's error to the fixture, so the log
    # is the only trace of what the server saw.
    log_file = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)
    log_path = Path(log_file.name)
    # A session of its own, so stopping it reaches the engine-core workers it spawns too.
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    log_file.close()
    try:
        _wait_ready(proc, port, log_path)
        yield f"http://127.0.0.1:{port}/v1"
    except BaseException as e:
        e.add_note(f"vLLM server log: {log_path}")
        raise
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    # No proxies: a cluster's http_proxy must not intercept a probe of 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"vLLM server exited with code {proc.returncode} while starting:\n{_tail(log_path)}"
            )
        try:
            with opener.open(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise TimeoutError(f"vLLM server not healthy after {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    # Also after a clean exit: the engine-core and worker processes can outlive the API server.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # SIGKILL is asynchronous: wait until the group is gone, so no worker still holds the cores
    # (or the memory) when the caller goes on.
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
