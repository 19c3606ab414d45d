"""A fault-injecting HTTP proxy for tests, on 127.0.0.1 between the pipeline and a real server.

A plan decides, per request body and attempt, which fault (if any) the proxy injects instead of
forwarding faithfully. Every injected fault (per injection, and per distinct request: a client that
times out under load repeats a request, and a fault planned for every attempt is injected again) and
every Authorization header seen is recorded, so a test can compare what the pipeline recorded with
what really happened on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable

from pipeline.testing.proxy import LocalProxy, read_request, send

# Faults a client should get over by retrying, and replies it must record as bad instead.
TRANSIENT = ("timeout", "429", "500", "drop", "cut", "truncated_json")
BAD_CRITIC = ("not_json", "missing_field")
PERMANENT = ("500_always",)

Plan = Callable[[dict, int], "str | None"]  # (request body, attempt from 1) -> fault or None


def body_hash(body: dict, salt: str = "") -> int:
    text = salt + json.dumps(body.get("messages"), sort_keys=True) + str(body.get("seed"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def text_of(body: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


class FaultProxy(LocalProxy):
    def __init__(self, upstream: str, plan: Plan):
        super().__init__(upstream)
        self.plan = plan
        self.injected: Counter = Counter()  # injections, by fault
        self.faulted: dict[str, set[int]] = {}  # the distinct requests each fault was injected into
        self.forwarded = 0
        self.authorizations: set[str] = set()
        self._attempts: Counter = Counter()
        self._lock = threading.Lock()

    def attempts(self) -> int:
        """Every request the proxy received, repeats included."""
        return sum(self._attempts.values())

    def requests_with(self, fault: str) -> int:
        """How many distinct requests got `fault`, however often each was sent."""
        return len(self.faulted.get(fault, ()))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, lower, raw = await read_request(reader)
            if "authorization" in lower:
                self.authorizations.add(lower["authorization"])
            body = json.loads(raw) if raw else {}
            with self._lock:
                key = body_hash(body, str(body.get("n")))
                self._attempts[key] += 1
                fault = self.plan(body, self._attempts[key]) if method == "POST" else None
                if fault:
                    self.injected[fault] += 1
                    self.faulted.setdefault(fault, set()).add(key)
            await self._respond(writer, reader, method, path, lower, raw, fault)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _respond(self, writer, reader, method, path, headers, raw, fault) -> None:
        if fault == "timeout":
            await reader.read()  # never answer; the client gives up and hangs up
            return
        if fault == "drop":
            return
        if fault == "429":
            return await send(writer, 429, b'{"error": "rate limited"}', {"Retry-After": "1"})
        if fault in ("500", "500_always"):
            return await send(writer, 500, b'{"error": "internal error"}')
        forward = {k: v for k, v in headers.items() if k in ("authorization", "content-type")}
        resp = await self.client.request(method, self.upstream + path, content=raw, headers=forward)
        self.forwarded += 1
        content = resp.content
        if fault == "cut":  # the connection dies mid-body
            return await send(writer, resp.status_code, content[: len(content) // 2], length=len(content))
        if fault == "truncated_json":  # a well-formed HTTP reply whose JSON is cut short
            return await send(writer, resp.status_code, content[: len(content) // 2])
        if fault in BAD_CRITIC:
            content = _rewrite_content(content, fault)
        await send(writer, resp.status_code, content)


def _rewrite_content(content: bytes, fault: str) -> bytes:
    """The reply as a critic that finished its answer wrongly would give it: whatever the model wrote
    (a rationale cut at the token limit included), the replacement is a whole reply."""
    data = json.loads(content)
    replacement = "The step looks correct to me." if fault == "not_json" else '{"correct": true}'
    for choice in data.get("choices", []):
        choice["message"]["content"] = replacement
        choice["finish_reason"] = "stop"
    return json.dumps(data).encode()
