"""dtype_auto_ratio: tokens/s of the dtype `auto` resolves to on this machine, over the other CPU dtype.

Each dtype gets an engine of its own (the default config's local engine with only the dtype changed)
and the same 32 sampled prompts of exactly 64 generated tokens, after a warm-up batch.
"""

from __future__ import annotations

import dataclasses
from time import perf_counter

from benchmarks import Figure
from benchmarks.session import sample_problems
from pipeline.config import load
from pipeline.engines import Request

PROMPTS, TOKENS = 32, 64


def tokens_per_s(settings) -> float:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(settings)
    try:
        problems = sample_problems(PROMPTS)
        prompts = [
            TokensPrompt(
                prompt_token_ids=engine.chat.ids(Request.chat([{"role": "user", "content": p["problem"]}]))
            )
            for p in problems
        ]
        # Exactly TOKENS each (no early stop), so both dtypes generate the same amount.
        params = [
            SamplingParams(max_tokens=TOKENS, min_tokens=TOKENS, temperature=0.8, seed=i)
            for i in range(PROMPTS)
        ]
        engine.llm.generate(prompts[:4], params[:4], use_tqdm=False)  # warm-up
        engine.llm.reset_prefix_cache()
        start = perf_counter()
        outputs = engine.llm.generate(prompts, params, use_tqdm=False)
        seconds = perf_counter() - start
        return sum(len(c.token_ids) for out in outputs for c in out.outputs) / seconds
    finally:
        engine.close()


def run() -> Figure:
    from pipeline.engines.vllm_engine import cpu_facts, resolve_dtype

    cfg = load()
    settings = cfg.engines[cfg.policy.engine]
    chosen = resolve_dtype(settings.dtype)
    if chosen not in ("float32", "bfloat16"):
        raise RuntimeError(
            f"dtype auto resolves to {chosen!r} here (a GPU?): this figure compares CPU dtypes"
        )
    other = "bfloat16" if chosen == "float32" else "float32"
    speed = {d: tokens_per_s(dataclasses.replace(settings, dtype=d)) for d in (chosen, other)}
    facts = cpu_facts()
    return Figure(
        "dtype_auto_ratio",
        round(speed[chosen] / speed[other], 3),
        ">= 1.0",
        [
            f"CPU {facts['cpu']} ({', '.join(facts['cpu_isa']) or 'no AVX2'}): auto -> {chosen}",
            f"{PROMPTS} prompts x {TOKENS} tokens: "
            + ", ".join(f"{d} {v:.1f} tok/s" for d, v in speed.items()),
        ],
    )
