"""Any OpenAI-compatible server (vLLM serve, SGLang, llama.cpp server, OpenAI), asked at once."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import Sequence
from dataclasses import replace

import openai

from pipeline.engines.base import BusyClock, Completion, EngineSettings, EngineStats, Request

log = logging.getLogger(__name__)

# vLLM/SGLang extension: render the last assistant message open-ended so the model continues it.
_CONTINUE_FINAL = {"continue_final_message": True, "add_generation_prompt": False}


class OpenAIEngine:
    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.label = settings.model
        self.stats = EngineStats()
        if settings.api_key_env:
            api_key = os.environ.get(settings.api_key_env)
            if not api_key:
                raise RuntimeError(
                    f"engine {settings.name!r}: environment variable {settings.api_key_env} "
                    "(api_key_env) is not set"
                )
        else:
            # Local servers take any key; a placeholder also keeps the client from sending an
            # OPENAI_API_KEY it finds in the environment.
            api_key = "EMPTY"
        # One loop for the engine's lifetime, in a thread of its own: the client's connection pool
        # is bound to the loop it first ran on, and callers come from any thread or event loop.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-engine", daemon=True)
        self._thread.start()
        # One bound for every call in flight, whichever caller sent it.
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self._busy = BusyClock()
        # The client retries 429/5xx/timeouts/connection errors itself, with exponential backoff
        # that honours Retry-After; the hook counts every HTTP attempt so the retries show in stats.
        self._attempts = 0
        self._calls = 0
        self.client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=api_key,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._count_attempt]}),
        )

    async def _count_attempt(self, _request) -> None:
        self._attempts += 1

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return self._submit(requests).result()

    async def agenerate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return await asyncio.wrap_future(self._submit(requests))

    def _submit(self, requests: Sequence[Request]):
        if not self.settings.supports_continue_final and any(r.continue_final for r in requests):
            raise ValueError(
                f"engine {self.settings.name!r} has supports_continue_final: false, but the "
                "single-step policy needs a server that can continue a partial assistant turn "
                "(vLLM or SGLang with continue_final_message)"
            )
        return asyncio.run_coroutine_threadsafe(self._generate(requests), self._loop)

    async def _generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        if not requests:
            return []
        with self._busy:
            results = list(await asyncio.gather(*(self._request(r) for r in requests)))
        self.stats.engine_s = self._busy.seconds
        self.stats.calls += 1
        self.stats.requests += len(requests)
        self.stats.retries = self._attempts - self._calls
        errors = [c.error for comps in results for c in comps if c.finish_reason == "error"]
        self.stats.completions += sum(len(comps) for comps in results) - len(errors)
        if errors:
            failed = sum(any(c.finish_reason == "error" for c in comps) for comps in results)
            self.stats.failed += failed
            log.warning(
                "%s: %d of %d requests failed after retries (%d completions left empty), e.g. %s",
                self.label,
                failed,
                len(requests),
                len(errors),
                errors[0],
            )
        return results

    async def _request(self, request: Request) -> list[Completion]:
        """Exactly request.n completions; missing choices are fetched one by one."""
        # vLLM rejects n > 1 with greedy sampling (400), so greedy requests ask for one choice
        # and take the rest from the same fallback as servers that ignore n.
        n = 1 if request.temperature == 0 else request.n
        comps = (await self._call(request, n, request.seed))[: request.n]
        if comps and comps[0].finish_reason == "error":
            return [replace(comps[0]) for _ in range(request.n)]
        # Some servers ignore n and answer with one choice: ask for the rest with n=1 each, with
        # distinct seeds so seeded sampling does not return the same text again.
        missing = range(len(comps), request.n)
        seeds = [None if request.seed is None else request.seed + i for i in missing]
        for extra in await asyncio.gather(*(self._call(request, 1, s) for s in seeds)):
            comps.extend(extra[:1])
        return comps

    async def _call(self, request: Request, n: int, seed: int | None) -> list[Completion]:
        """One HTTP call; a failure that outlived the retries gives n error completions."""
        params = self._params(request, n, seed)
        self._calls += 1
        for attempt in range(self.settings.max_retries + 1):
            try:
                async with self._limit:
                    response = await self.client.chat.completions.create(**params)
                return self._completions(response, request)
            except openai.APIError as e:
                # The client has already retried what is worth retrying. Class and status only:
                # a server's error body may echo (part of) the API key.
                status = getattr(e, "status_code", None)
                error = type(e).__name__ + (f" {status}" if status else "")
                break
            except (ValueError, TypeError, AttributeError) as e:
                # A 200 whose body is not a chat completion (cut short by a proxy, garbage): the
                # client does not retry these, so retry here with the client's backoff.
                error = f"invalid response body ({type(e).__name__})"
                if attempt < self.settings.max_retries:
                    await asyncio.sleep(min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random()))
        return [Completion("", 0, finish_reason="error", error=error) for _ in range(n)]

    def _completions(self, response, request: Request) -> list[Completion]:
        choices = response.choices
        if not isinstance(choices, list) or not choices:
            raise ValueError("no choices")
        texts = [c.message.content or "" for c in choices]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("message content is not text")
        usage = response.usage
        completion_tokens = usage.completion_tokens if usage else 0
        # Every HTTP call pays for its prompt, so emulated n counts the prompt once per call.
        self.stats.prompt_tokens += usage.prompt_tokens if usage else 0
        self.stats.completion_tokens += completion_tokens
        return [
            Completion(
                text=text,
                tokens=tokens,
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                ended=_ended(choice, request),
            )
            for choice, text, tokens in zip(choices, texts, _split_tokens(completion_tokens, texts))
        ]

    def _params(self, request: Request, n: int, seed: int | None) -> dict:
        params: dict = dict(
            model=self.settings.model,
            messages=request.message_dicts(),
            n=n,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        )
        if request.stop:
            params["stop"] = list(request.stop)
        if seed is not None:
            params["seed"] = seed
        schema = request.schema()
        if schema:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True},
            }
        extra = dict(_CONTINUE_FINAL) if request.continue_final else {}
        if request.repetition_penalty != 1.0:
            # Not in the OpenAI API; vLLM and SGLang servers read it from the body.
            extra["repetition_penalty"] = request.repetition_penalty
        # The configured extra_body comes last: it is the escape hatch for server quirks.
        extra.update(self.settings.extra_body)
        if extra:
            params["extra_body"] = extra
        return params

    def close(self) -> None:
        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


def _ended(choice, request: Request) -> bool:
    """Did the model end its turn itself? vLLM and SGLang report the matched stop string as
    stop_reason (None at end of sequence); other servers do not say, so a stop there counts as
    the stop string when one was asked for."""
    if choice.finish_reason != "stop":
        return False
    extra = choice.model_extra or {}
    if "stop_reason" in extra:
        return extra["stop_reason"] is None
    return not request.stop


def _split_tokens(total: int, texts: list[str]) -> list[int]:
    """Share a response's completion tokens among its choices.

    usage.completion_tokens counts all n choices together and servers report no per-choice
    count, so each choice gets a share proportional to its text length (equal shares when all
    texts are empty). Rounding on cumulative sums keeps the shares adding up to the total.
    """
    weights = [len(t) for t in texts] if any(texts) else [1] * len(texts)
    whole = sum(weights)
    shares, done, cumulative = [], 0, 0
    for w in weights:
        cumulative += w
        upto = (total * cumulative * 2 + whole) // (2 * whole)
        shares.append(upto - done)
        done = upto
    return shares
