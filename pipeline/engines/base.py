"""The engine protocol every backend implements: prompts in, n completions per prompt out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Request:
    """One prompt as chat messages.

    continue_final: the last message is a partial assistant turn the model continues
    (single-step policy) instead of answering a new turn.
    json_schema: a JSON schema (as a sorted JSON string, so requests stay hashable) the
    output must follow; engines enforce it with structured output.
    """

    messages: tuple[tuple[str, str], ...]
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    continue_final: bool = False
    json_schema: str | None = None

    @staticmethod
    def chat(messages: Sequence[dict], **kwargs) -> Request:
        return Request(messages=tuple((m["role"], m["content"]) for m in messages), **kwargs)

    def message_dicts(self) -> list[dict]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def schema(self) -> dict | None:
        return json.loads(self.json_schema) if self.json_schema else None


def schema_string(schema: dict) -> str:
    return json.dumps(schema, sort_keys=True)


@dataclass
class Completion:
    text: str
    tokens: int
    finish_reason: str  # "stop" (EOS or a stop string), "length", or "error"
    error: str = ""
    ended: bool = False  # the model closed its turn itself (end of sequence), not at a stop string


@dataclass
class EngineStats:
    calls: int = 0
    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_s: float = 0.0
    cache_hits: int = 0  # requests answered from the response cache instead of the engine
    cache_hit_tokens: int = 0  # the generated tokens of those replies: what this run did not pay again
    retries: int = 0  # HTTP calls repeated after a timeout, a dropped connection, 429, 5xx or a bad body
    failed: int = 0  # requests that still failed after the retries (their completions are errors)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Engine(Protocol):
    """Engines may also offer `async agenerate(requests)` (same result): callers on an event loop
    use it through `generate_async`, so many calls share a continuously batching engine at once."""

    label: str  # model name as recorded in outputs
    stats: EngineStats

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """n completions for each request, in request order. One call = one engine batch."""

    def close(self) -> None: ...


async def generate_async(engine: Engine, requests: Sequence[Request]) -> list[list[Completion]]:
    """`engine.agenerate` where the engine has one. A scripted test engine without it is called
    inline: the event loop waits, so its calls keep one deterministic order."""
    agenerate = getattr(type(engine), "agenerate", None)
    if agenerate is not None:
        return await agenerate(engine, requests)
    return engine.generate(requests)


class BusyClock:
    """Seconds during which at least one call was in flight: an engine serving overlapping calls
    is busy once for all of them, so its tokens per second are not divided by a summed time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inflight = 0
        self._since = 0.0
        self.seconds = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._inflight == 0:
                self._since = time.perf_counter()
            self._inflight += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self.seconds += time.perf_counter() - self._since


@dataclass
class EngineSettings:
    """How to reach one model; config's `engines.<name>`."""

    name: str
    kind: str  # "vllm" | "openai"
    model: str
    # vllm
    max_model_len: int | None = 4096
    gpu_memory_utilization: float = 0.3
    enforce_eager: bool = True
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool = True
    # The KV cache in GiB, "auto" (max_num_seqs sequences of a quarter of max_model_len tokens, see
    # vllm_engine.auto_kv_tokens), or None (vLLM's own sizing from gpu_memory_utilization, the usual on a GPU).
    kv_cache_gib: float | str | None = None
    max_num_seqs: int | None = None
    # vLLM's engine core in a process of its own (true) or in the job's process (false); null: in the
    # job's process on a CPU, where it loads in half the time, its own process on a GPU (vLLM's default).
    engine_process: bool | None = None
    vllm_kwargs: dict = field(default_factory=dict)
    # openai
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = 16
    timeout_s: float = 120.0
    max_retries: int = 5
    extra_body: dict = field(default_factory=dict)
    supports_continue_final: bool = True
    # USD per million tokens, {input: ..., output: ...}: stats, the card and the report price the run.
    prices: dict[str, float] | None = None
