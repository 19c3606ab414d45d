"""In-process vLLM: the whole batch of a tree level goes to the engine in one generate call."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from pipeline.engines.base import Completion, EngineSettings, EngineStats, Request
from pipeline.model_files import cache_root, resolve_model


def _cpu_defaults() -> None:
    # Measured on 2-core CPU machines: using both cores is ~1.5x faster than vLLM's default of
    # reserving one, and the compile cache belongs in the workspace, not $HOME.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_root() / "vllm"))


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMEngine:
    def __init__(self, settings: EngineSettings):
        _cpu_defaults()
        from vllm import LLM

        self.label = settings.model
        self.stats = EngineStats()
        kwargs = dict(
            model=resolve_model(settings.model),
            dtype=settings.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            enable_prefix_caching=settings.enable_prefix_caching,
        )
        if settings.max_model_len:
            kwargs["max_model_len"] = settings.max_model_len
        if _on_cpu():
            # vLLM's CPU runner rewinds a seeded request's generator when a chunked prefill is cut
            # short, which CPU generators cannot do ("CPU Generator does not use offset"): with
            # per-node seeds every larger batch crashed the engine until chunked prefill was off.
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(settings.vllm_kwargs)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, request: Request) -> str:
        return self.tokenizer.apply_chat_template(
            request.message_dicts(),
            tokenize=False,
            add_generation_prompt=not request.continue_final,
            continue_final_message=request.continue_final,
        )

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
        if not requests:
            return []
        prompts = [self.render(r) for r in requests]
        params = [self._sampling(r) for r in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        self.stats.engine_s += time.perf_counter() - start
        self.stats.calls += 1
        self.stats.requests += len(requests)
        results = []
        for out in outputs:
            self.stats.prompt_tokens += len(out.prompt_token_ids or ())
            comps = []
            for c in out.outputs:
                tokens = len(c.token_ids)
                self.stats.completion_tokens += tokens
                finish = "length" if c.finish_reason == "length" else "stop"
                ended = finish == "stop" and c.stop_reason is None
                comps.append(Completion(text=c.text, tokens=tokens, finish_reason=finish, ended=ended))
            self.stats.completions += len(comps)
            results.append(comps)
        return results

    def close(self) -> None:
        # Drop the engine so its worker process and memory are released before the stage ends.
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
        start = time.perf_counter()
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        self.stats.engine_s += time.perf_counter() - start
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
        start = time.perf_counter()
        outputs = self.llm.encode(list(prompts), params, pooling_task="token_classify", use_tqdm=False)
        self.stats.engine_s += time.perf_counter() - start
        self.stats.calls += 1
        self.stats.requests += len(prompts)
        self.stats.prompt_tokens += sum(len(out.prompt_token_ids or ()) for out in outputs)
        return [out.outputs.data.tolist() for out in outputs]
