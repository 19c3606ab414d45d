"""A reverse proxy that adds network latency to an OpenAI-compatible server, and a local server to put behind it.

`latency_proxy(upstream, delay_s)` serves on 127.0.0.1 (a free port) and forwards every request to
`upstream` after sleeping `delay_s`: what an endpoint a round trip away costs a client that waits on
each call. Concurrent calls wait side by side (asyncio.sleep), as on a real network: the delay is per
call, not a queue. Replies are read whole before they are passed on, so a streamed reply arrives in
one piece at the end. `local_vllm_server()` starts the embedded model as a vLLM OpenAI-compatible
server, its KV cache sized as the default config's engine sizes its own.

    with local_vllm_server() as upstream, latency_proxy(upstream, 1.0) as url:
        OpenAI(base_url=url, api_key="none").chat.completions.create(model="smollm2", ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator

import httpx

from pipeline.testing.proxy import LocalProxy, read_request, send

# The headers a client's request keeps on its way upstream, and a reply's on its way back.
FORWARD_REQUEST = ("authorization", "content-type", "accept")
FORWARD_REPLY = ("content-type",)


class LatencyProxy(LocalProxy):
    """Forwards each request to `upstream` after `delay_s`; counts the calls, by method and path."""

    def __init__(self, upstream: str, delay_s: float):
        super().__init__(upstream)
        self.delay_s = delay_s
        self.calls = 0  # requests forwarded (or failed upstream), every path
        self.by_path: Counter = Counter()  # "POST /v1/chat/completions" -> calls
        self.upstream_errors = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = await read_request(reader)
            self.calls += 1  # one event loop thread: no lock needed
            self.by_path[f"{method} {path}"] += 1
            await asyncio.sleep(self.delay_s)
            forward = {k: v for k, v in headers.items() if k in FORWARD_REQUEST}
            try:
                resp = await self.client.request(method, self.upstream + path, content=body, headers=forward)
            except httpx.HTTPError as exc:
                self.upstream_errors += 1
                return await send(writer, 502, f'{{"error": "upstream: {type(exc).__name__}"}}'.encode())
            reply = {k: v for k, v in resp.headers.items() if k.lower() in FORWARD_REPLY}
            await send(writer, resp.status_code, resp.content, reply)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # a client that hung up or sent no HTTP: nothing to answer
        finally:
            writer.close()


@contextlib.contextmanager
def latency_proxy(upstream_url: str, delay_s: float) -> Iterator[str]:
    """The base URL of a proxy to `upstream_url` (".../v1") that delays every call by `delay_s`."""
    with LatencyProxy(upstream_url, delay_s).running() as proxy:
        yield proxy.url


@contextlib.contextmanager
def local_vllm_server() -> Iterator[str]:
    """The embedded model served by vLLM on 127.0.0.1 as "smollm2"; yields http://127.0.0.1:PORT/v1.

    Started by pipeline/testing/vllm_server.py (the one place that knows how to start and reliably stop a vLLM
    server here, engine-core workers included). Its log is kept in /tmp (vllm-server-*.log), as the
    tests keep theirs.
    """
    from pipeline.model_files import EMBEDDED_MODEL, resolve_model
    from pipeline.testing.vllm_server import vllm_server

    with vllm_server(resolve_model(EMBEDDED_MODEL)) as url:
        yield url


def measure(delay_s: float = 1.0) -> dict:
    """Start the local server, send one chat request straight to it and one through the proxy.

    Returns the server's start-up seconds, each request's seconds and the proxy's call count.
    """
    from openai import OpenAI

    start = time.perf_counter()
    with local_vllm_server() as upstream:
        server_start_s = time.perf_counter() - start
        with LatencyProxy(upstream, delay_s).running() as proxy:
            seconds = {}
            for name, url in (("warm-up", upstream), ("direct", upstream), ("proxied", proxy.url)):
                client = OpenAI(base_url=url, api_key="none", max_retries=0)
                t0 = time.perf_counter()
                reply = client.chat.completions.create(
                    model="smollm2",
                    messages=[{"role": "user", "content": "What is 2 + 3?"}],
                    max_tokens=16,
                    temperature=0.0,
                    seed=1,
                )
                seconds[name] = time.perf_counter() - t0
                seconds[f"{name}_text"] = reply.choices[0].message.content
            return {
                "server_start_s": round(server_start_s, 1),
                **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in seconds.items()},
                "added_s": round(seconds["proxied"] - seconds["direct"], 3),
                "proxy_calls": proxy.calls,
                "proxy_by_path": dict(proxy.by_path),
            }


if __name__ == "__main__":
    import json
    import os
    import sys

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0), indent=2))
