"""The plumbing of the small HTTP proxies that tests and benchmarks put in front of a real server
(faults in tests/fault_proxy.py, latency in benchmarks/latency_proxy.py): one request in, one reply
out, served from a thread's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from pipeline.testing.vllm_server import free_port


class LocalProxy:
    """A proxy on 127.0.0.1 in front of `upstream` (".../v1"), served from a thread of its own while
    `running()`; a subclass answers each connection in `handle`, forwarding through `client`."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.path_prefix = parts.path.rstrip("/")
        self.port = free_port()
        self.client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL, with the upstream's path (".../v1")."""
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            self.client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))
            try:
                try:
                    server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
                except OSError as exc:  # the port was taken between free_port() and here
                    failed.append(exc)
                    return
                finally:
                    started.set()
                async with server:
                    await server.serve_forever()
            finally:
                await self.client.aclose()

        thread = threading.Thread(target=run_until_cancelled, args=(loop, serve()), daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")
        if failed:
            raise failed[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
            thread.join(10)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    """One HTTP/1.1 request: method, path, headers (names lower-cased) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    return method, path, headers, await reader.readexactly(int(headers.get("content-length", 0)))


def run_until_cancelled(loop: asyncio.AbstractEventLoop, main) -> None:
    """A proxy's thread: serve on `loop` until its tasks are cancelled, then close it."""
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(main)
    loop.close()


async def send(writer, status: int, body: bytes, extra: dict | None = None, length: int | None = None):
    """A reply that closes the connection; JSON unless `extra` names a content-type; `length`
    announces another body length than the one sent (a body cut short)."""
    extra = extra or {}
    head = [f"HTTP/1.1 {status} X", "Connection: close"]
    if not any(k.lower() == "content-type" for k in extra):
        head.append("Content-Type: application/json")
    head.append(f"Content-Length: {len(body) if length is None else length}")
    head += [f"{k}: {v}" for k, v in extra.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
