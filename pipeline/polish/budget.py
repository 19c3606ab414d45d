"""The polisher's token budget: a multiple of the raw thought's length plus a margin, under a cap.

A rewrite is about as long as what it rewrites, so a polisher that runs off into repetition is cut
near that length instead of spending the whole max_tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.engines.base import EngineSettings
from pipeline.model_files import resolve_model

# Endpoints do not expose their tokenizer through the OpenAI API, so their count is estimated from
# characters. Math text (digits, symbols, LaTeX) runs 3-4 characters per token in common BPE
# vocabularies; 3 errs towards a larger budget, never one that cuts a faithful rewrite short.
CHARS_PER_TOKEN = 3.0


def token_budget(raw_tokens: int, factor: float, margin: int, cap: int) -> int:
    """min(cap, ceil(factor * raw_tokens) + margin).

    >>> token_budget(200, 1.5, 64, 1024)
    364
    >>> token_budget(900, 1.5, 64, 1024)
    1024
    """
    return min(cap, math.ceil(factor * raw_tokens) + margin)


def tokenizer_file(model: str) -> Path | None:
    """The model's tokenizer.json: in its folder, or in the Hugging Face cache (never downloaded)."""
    local = Path(model) / "tokenizer.json"
    if local.is_file():
        return local
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "tokenizer.json")
    except ValueError:  # not a hub id either: a folder that does not exist here
        return None
    return Path(cached) if isinstance(cached, str) else None


class TokenCounter:
    """Tokens of a text for the polisher's model: exact with the tokenizer.json of an in-process
    vLLM engine's model (read alone, in a fraction of a second, so a rerun served from the response
    cache still never loads the model), estimated from characters for an OpenAI-compatible endpoint
    or a model whose tokenizer.json is not on this machine."""

    def __init__(self, settings: EngineSettings):
        self.tokenizer = None
        if settings.kind == "vllm":
            path = tokenizer_file(settings.vllm_kwargs.get("tokenizer") or resolve_model(settings.model))
            if path is not None:
                from tokenizers import Tokenizer

                self.tokenizer = Tokenizer.from_file(str(path))

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
