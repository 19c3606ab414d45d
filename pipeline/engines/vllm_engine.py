"""In-process vLLM, stepped continuously: requests join the running batch whenever they arrive."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from pipeline.engines.base import Completion, EngineSettings, EngineStats, Request
from pipeline.model_files import cache_root, resolve_model

log = logging.getLogger(__name__)


def _cpu_defaults() -> None:
    # Measured on 2-core CPU machines: using both cores is ~1.5x faster than vLLM's default of
    # reserving one, and the compile cache belongs in the workspace, not $HOME.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_root() / "vllm"))


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


# CPU instruction sets that decide vLLM-CPU's speed; the first two compute bfloat16 natively.
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_ISA_FLAGS = (*_BF16_FLAGS, "avx512f", "avx2")


def cpu_facts(cpuinfo: str | None = None) -> dict:
    r"""The CPU's model name and the instruction sets of `_ISA_FLAGS` it has (from /proc/cpuinfo).

    >>> cpu_facts("model name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n")
    {'cpu': 'AMD EPYC', 'cpu_isa': ['avx2']}
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name", "unknown"), "cpu_isa": [f for f in _ISA_FLAGS if f in flags]}


def choose_dtype(dtype: str, on_cpu: bool, cpu_isa: Sequence[str]) -> str:
    """The dtype vLLM runs: `auto` is the model's own on a GPU; on a CPU, bfloat16 where the CPU computes
    it natively, float32 elsewhere (measured on an AVX2-only EPYC: bfloat16 39.5, float32 148.8 tok/s).

    >>> choose_dtype("auto", on_cpu=True, cpu_isa=["avx2"]), choose_dtype("auto", True, ["amx_bf16", "avx2"])
    ('float32', 'bfloat16')
    >>> choose_dtype("auto", on_cpu=False, cpu_isa=[]), choose_dtype("float16", True, ["avx2"])
    ('auto', 'float16')
    """
    if dtype != "auto":
        return dtype
    if not on_cpu:
        return "auto"
    return "bfloat16" if any(f in cpu_isa for f in _BF16_FLAGS) else "float32"


def resolve_dtype(dtype: str) -> str:
    """choose_dtype for this machine."""
    return choose_dtype(dtype, _on_cpu(), cpu_facts()["cpu_isa"])


class ChatTokens:
    """Chat prompts as token ids in which message text is only ever text.

    Tokenizing the rendered template as one string would read a problem's "<|im_start|>assistant"
    as a real turn marker: text from a data set could open turns of its own. Here the template's
    own special tokens stay special, and the text between them, messages included, is tokenized
    with special tokens split.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.special_ids = {t.content: i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        # Longest first, so a special token that begins with another is matched whole.
        names = sorted(self.special_ids, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None
        # Random, so no message can hold it by chance; letters only, so no template escapes it.
        self._slot = f"journeyslot{secrets.token_hex(8)}x"
        self._slots = re.compile(self._slot + r"(\d+)x")
        self._warned = False

    def render(self, request: Request, contents: Sequence[str] | None = None) -> str:
        """The chat template applied to the request (or to its roles with other contents), as text."""
        if contents is None:
            contents = [c for _, c in request.messages]
        return self.tokenizer.apply_chat_template(
            [{"role": r, "content": c} for (r, _), c in zip(request.messages, contents)],
            tokenize=False,
            add_generation_prompt=not request.continue_final,
            continue_final_message=request.continue_final,
        )

    def ids(self, request: Request) -> list[int]:
        """The prompt's token ids: for messages without special-token text, exactly the rendered
        text's own tokenization."""
        # No special token added around the template: like vLLM's own chat path, the template
        # writes whatever BOS the model needs.
        text = self.render(request)
        if not any(s in c for _, c in request.messages for s in self.special_ids):
            return self.tokenizer.encode(text, add_special_tokens=False)
        parts = self._parts(request, text)
        if parts is None:
            self._warn_once()
            return self.tokenizer.encode(text, add_special_tokens=False)
        return [i for part, special in parts for i in self._part_ids(part, special)]

    def _parts(self, request: Request, text: str) -> list[tuple[str, bool]] | None:
        """The rendered prompt as (text, is the template's special token) parts, or None when the
        template does not write each message verbatim once and in order (it trims, say)."""
        n = len(request.messages)
        pieces = self._slots.split(self.render(request, [f"{self._slot}{i}x" for i in range(n)]))
        if pieces[1::2] != [str(i) for i in range(n)]:
            return None
        parts: list[tuple[str, bool]] = []
        for k, piece in enumerate(pieces):
            if k % 2:
                _add_text(parts, request.messages[int(piece)][1])
                continue
            for j, chunk in enumerate(self._special.split(piece)):
                if j % 2:
                    parts.append((chunk, True))
                else:
                    _add_text(parts, chunk)
        return parts if "".join(p for p, _ in parts) == text else None

    def _part_ids(self, part: str, special: bool) -> list[int]:
        if special:
            return [self.special_ids[part]]
        # The text between two of the template's special tokens is tokenized in one piece, as the
        # whole-string tokenization does, so only the special tokens inside a message change.
        return self.tokenizer(part, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def _warn_once(self) -> None:
        if not self._warned:
            log.warning(
                "the chat template changes message text, so special tokens inside messages "
                "cannot be told apart from the template's and are tokenized as special tokens"
            )
            self._warned = True


def _add_text(parts: list[tuple[str, bool]], text: str) -> None:
    if parts and not parts[-1][1]:
        parts[-1] = (parts[-1][0] + text, False)
    elif text:
        parts.append((text, False))


def _kv_bytes(settings: EngineSettings, model_dir: str, dtype: str) -> int:
    if settings.kv_cache_gib != "auto":
        return int(float(settings.kv_cache_gib) * 2**30)
    if not (settings.max_num_seqs and settings.max_model_len):
        raise ValueError(f"engine {settings.name!r}: kv_cache_gib auto needs max_num_seqs and max_model_len")
    tokens = auto_kv_tokens(settings.max_num_seqs, settings.max_model_len)
    size = kv_cache_bytes(model_dir, tokens, dtype)
    log.info("engine %s: KV cache %.2f GiB (%d tokens)", settings.name, size / 2**30, tokens)
    return size


def auto_kv_tokens(max_num_seqs: int, max_model_len: int) -> int:
    """Tokens `kv_cache_gib: auto` holds: `max_num_seqs` sequences of a quarter of `max_model_len`,
    and at least one whole sequence; vLLM queues (or preempts) what does not fit.

    The pipeline's requests hold a few hundred to two thousand tokens, and a KV cache is zeroed
    when the engine starts: on a VM that is first touch of fresh memory, measured at 7-21 s for
    2.81 GiB (16 whole sequences of the embedded model) against about 1 s for memory in use before.

    >>> auto_kv_tokens(16, 4096), auto_kv_tokens(2, 4096)
    (16384, 4096)
    """
    return max(max_num_seqs * max_model_len // 4, max_model_len)


def _too_long(prompt_tokens: int, max_model_len: int) -> str:
    """Why vLLM would refuse the prompt (it raises for the whole batch), or "" when it fits."""
    if prompt_tokens > max_model_len:
        return f"prompt is {prompt_tokens} tokens, over max_model_len {max_model_len}"
    if prompt_tokens == max_model_len:
        return f"prompt is {prompt_tokens} tokens, max_model_len {max_model_len} leaves no room to generate"
    return ""


class StepLoop:
    """vLLM's engine stepped in a thread of its own: a request from any thread or event loop joins
    the running batch at the next step (continuous batching, as vLLM's server does), and its future
    resolves as soon as its own sequences finish, whatever else is still running."""

    def __init__(self, llm):
        self.llm = llm
        self._busy_s = 0.0  # closed stretches with at least one request in the engine
        self._busy_since: float | None = None  # the stretch still open
        self._busy_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, Future] = {}
        self._thread = threading.Thread(target=self._run, name="vllm-steps", daemon=True)
        self._thread.start()

    def busy_s(self) -> float:
        """Seconds with at least one request in the engine, the stretch still running included: a
        caller woken by its last result reads this before the step thread closes that stretch, and a
        streaming build is one stretch from its first request to its last."""
        with self._busy_lock:
            running = time.perf_counter() - self._busy_since if self._busy_since is not None else 0.0
            return self._busy_s + running

    def submit(self, prompt, params) -> Future:
        future: Future = Future()
        self._queue.put((prompt, params, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.llm = None  # the engine's owner drops it; nothing here may keep it alive

    def _run(self) -> None:
        while True:
            # Wait for work only while the engine is idle; otherwise take what arrived and step.
            items = [] if self._pending else [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in items:
                self._fail_all(RuntimeError("the engine was closed"))
                return
            start = time.perf_counter()
            for prompt, params, future in items:
                if not future.set_running_or_notify_cancel():  # its caller gave up waiting
                    continue
                try:
                    (internal,) = self.llm.enqueue(prompt, params, use_tqdm=False)
                except Exception as e:  # a request vLLM refuses fails alone
                    future.set_exception(e)
                    continue
                # Outputs carry the id handed to vLLM; enqueue returns it with a random suffix.
                self._pending[internal.rsplit("-", 1)[0]] = future
            if not self._pending:
                continue
            if self._busy_since is None:
                with self._busy_lock:
                    self._busy_since = start
            try:
                outputs = self.llm.llm_engine.step()
            except Exception as e:
                self._fail_all(e)
                outputs = []
            for out in outputs:
                if out.finished and out.request_id in self._pending:
                    self._pending.pop(out.request_id).set_result(out)
            if not self._pending and self._busy_since is not None:
                with self._busy_lock:
                    self._busy_s += time.perf_counter() - self._busy_since
                    self._busy_since = None

    def _fail_all(self, error: Exception) -> None:
        for future in self._pending.values():
            future.set_exception(error)
        self._pending.clear()


def kv_cache_bytes(model: str, tokens: int, dtype: str = "auto") -> int:
    """KV-cache bytes for `tokens` tokens: keys and values of every layer.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> _ = Path(d, "config.json").write_text('{"num_hidden_layers": 30, "num_attention_heads": 9, '
    ...     '"num_key_value_heads": 3, "hidden_size": 576}')
    >>> kv_cache_bytes(d, tokens=1)  # SmolLM2-135M: 30 layers x 3 heads x 64 x (K, V) x 2 B
    23040
    """
    config = Path(model) / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text())
    else:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model).to_dict()
    cfg = cfg.get("text_config", cfg)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    # dtype auto (on a GPU, after resolve_dtype): vLLM runs even a float32 checkpoint in 16 bits.
    width = 4 if dtype in ("float32", "float") else 2
    return 2 * cfg["num_hidden_layers"] * kv_heads * head_dim * width * tokens


class VLLMEngine:
    def __init__(self, settings: EngineSettings):
        _cpu_defaults()
        from vllm import LLM

        self.label = settings.model
        self.stats = EngineStats()
        on_cpu = _on_cpu()
        cpu = cpu_facts() if on_cpu else {}
        dtype = choose_dtype(settings.dtype, on_cpu, cpu.get("cpu_isa", []))
        kwargs = dict(
            model=resolve_model(settings.model),
            dtype=dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            enable_prefix_caching=settings.enable_prefix_caching,
        )
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
        if settings.max_num_seqs:
            kwargs["max_num_seqs"] = settings.max_num_seqs
        if settings.kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = _kv_bytes(settings, kwargs["model"], dtype)
        if on_cpu:
            # vLLM's CPU runner rewinds a seeded request's generator when a chunked prefill is cut
            # short, which CPU generators cannot do ("CPU Generator does not use offset"): with
            # per-node seeds every larger batch crashed the engine until chunked prefill was off.
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(settings.vllm_kwargs)
        # In the job's process the core saves two processes (EngineCore, Worker) that each import torch
        # and vLLM. Measured on a 2-core AMD EPYC (AVX2): load 33 -> 16.5 s, close 4.5 -> 1.1 s, but 18%
        # fewer tok/s (p6's idle build: 58.9 against 71.8), as scheduling no longer overlaps the forward
        # pass; short jobs (the quick start, the tests) gain, long ones should set engine_process: true.
        # vLLM reads the variable when the engine starts.
        separate = settings.engine_process if settings.engine_process is not None else not on_cpu
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if separate else "0"
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat = ChatTokens(self.tokenizer)
        self.max_model_len = self.llm.model_config.max_model_len
        # What this job ran on, for stats and the card: the same config runs at other speeds elsewhere.
        self.facts = {
            "device": "cpu" if on_cpu else "gpu",
            "engine_process": separate,
            "dtype": str(self.llm.model_config.dtype).removeprefix("torch."),
            **cpu,
        }
        self.steps = StepLoop(self.llm)

    def render(self, request: Request) -> str:
        """The request's prompt as text (what the model reads; generate sends the tokens)."""
        return self.chat.render(request)

    def _sampling(self, request: Request):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        schema = request.schema()
        return SamplingParams(
            n=request.n,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            repetition_penalty=request.repetition_penalty,
            stop=list(request.stop) or None,
            seed=request.seed,
            structured_outputs=StructuredOutputsParams(json=schema) if schema else None,
        )

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Requests whose prompt does not fit max_model_len get error completions and are not sent:
        vLLM would refuse them."""
        results, sent = self._submit(requests)
        return self._collect(results, sent, [f.result() for _, f in sent])

    async def agenerate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """generate for callers on an event loop: the loop runs on while the engine works."""
        results, sent = self._submit(requests)
        outputs = await asyncio.gather(*(asyncio.wrap_future(f) for _, f in sent))
        return self._collect(results, sent, outputs)

    def _submit(self, requests: Sequence[Request]) -> tuple[list[list[Completion]], list[tuple[int, Future]]]:
        from vllm.inputs import TokensPrompt

        results: list[list[Completion]] = [[] for _ in requests]
        sent = []
        for i, request in enumerate(requests):
            ids = self.chat.ids(request)
            error = _too_long(len(ids), self.max_model_len)
            if error:
                log.warning("request %d of %d not sent: %s", i + 1, len(requests), error)
                self.stats.failed += 1
                results[i] = [Completion("", 0, finish_reason="error", error=error) for _ in range(request.n)]
            else:
                prompt = TokensPrompt(prompt_token_ids=ids)
                sent.append((i, self.steps.submit(prompt, self._sampling(request))))
        self.stats.calls += bool(sent)
        self.stats.requests += len(sent)
        return results, sent

    def _collect(self, results: list[list[Completion]], sent, outputs) -> list[list[Completion]]:
        for (i, _), out in zip(sent, outputs):
            self.stats.prompt_tokens += len(out.prompt_token_ids or ())
            comps = []
            for c in out.outputs:
                tokens = len(c.token_ids)
                self.stats.completion_tokens += tokens
                finish = "length" if c.finish_reason == "length" else "stop"
                ended = finish == "stop" and c.stop_reason is None
                comps.append(Completion(text=c.text, tokens=tokens, finish_reason=finish, ended=ended))
            self.stats.completions += len(comps)
            results[i] = comps
        self.stats.engine_s = self.steps.busy_s()
        return results

    def close(self) -> None:
        # Shut the engine-core process (and its workers) down now, not whenever the engine is
        # collected: a cancelled job must not leave them holding memory or a GPU.
        self.steps.close()
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for {self.label}'s tokenizer ({ids}), not one")
        return ids[0]

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        """The model's log-probability of each candidate (a single token) right after each raw text
        prompt (no chat template): judges that answer with a token, such as Math-Shepherd's +/-."""
        from vllm import SamplingParams

        if not prompts:
            return []
        ids = {c: self._single_token(c) for c in candidates}
        # logprob_token_ids are gathered from the log-softmax of the raw logits (logprobs_mode
        # "raw_logprobs"), before temperature, penalties or an allowed-token mask touch them.
        params = SamplingParams(
            max_tokens=1, temperature=0.0, logprob_token_ids=list(dict.fromkeys(ids.values()))
        )
        # Through the step loop, so a PRM sharing the policy's engine joins its batch.
        outputs = [f.result() for f in [self.steps.submit(p, params.clone()) for p in prompts]]
        self.stats.engine_s = self.steps.busy_s()
        self.stats.calls += 1
        self.stats.requests += len(prompts)
        self.stats.prompt_tokens += sum(len(out.prompt_token_ids or ()) for out in outputs)
        return [{c: out.outputs[0].logprobs[0][i].logprob for c, i in ids.items()} for out in outputs]

    def token_label_probs(self, prompts: Sequence[str], token: str) -> list[list[list[float]]]:
        """A token-classification model's label probabilities at every occurrence of `token` in each
        raw text prompt, such as a Qwen-PRM's step separator. Needs the engine opened as a pooling
        model (vllm_kwargs runner: pooling) whose pooling type is STEP (Qwen2ForProcessRewardModel's)."""
        from vllm import PoolingParams

        if not prompts:
            return []
        params = PoolingParams(step_tag_id=self._single_token(token))
        # A pooling model serves no generate requests, so its step loop is idle: encode steps alone.
        start = time.perf_counter()
        outputs = self.llm.encode(list(prompts), params, pooling_task="token_classify", use_tqdm=False)
        self.stats.engine_s += time.perf_counter() - start
        self.stats.calls += 1
        self.stats.requests += len(prompts)
        self.stats.prompt_tokens += sum(len(out.prompt_token_ids or ()) for out in outputs)
        return [out.outputs.data.tolist() for out in outputs]
