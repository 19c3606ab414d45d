"""The plumbing of the small HTTP proxies that tests and benchmarks put in front of a real server
(faults in tests/fault_proxy.py, latency in benchmarks/latency_proxy.py): one request in, one reply
out, served from a thread's own event loop."""

from __future__ import annotations

import asyncio
import contextlib


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
