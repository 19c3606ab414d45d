"""Which models an evaluation runs, and on which engine: the configured list, or by default the base
model and each trained stage's checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, EvalModelSpec
from pipeline.engines.base import EngineSettings

# A checkpoint's files that decide what it generates: a retrained folder at the same path changes these.
_WEIGHTS = ("*.safetensors", "*.bin", "config.json", "generation_config.json", "tokenizer*", "*.jinja")


@dataclass(frozen=True)
class ModelToEval:
    name: str
    engine: EngineSettings  # the engine's settings with this model swapped in
    trained_stage: str | None  # the train stage that wrote it; None for the base or a listed model


def train_dir(cfg: Config) -> Path:
    return cfg.run_dir / "train"


def base_model(cfg: Config) -> str:
    """The model training starts from: train.model, else the policy engine's model."""
    return cfg.train.model or cfg.engines[cfg.policy.engine].model


def evaluated_models(cfg: Config) -> list[ModelToEval]:
    em = cfg.eval_model
    if em.models is not None:
        listed = [(spec, None) for spec in em.models]
    else:
        listed = [(EvalModelSpec("base", base_model(cfg)), None)]
        listed += [(EvalModelSpec(s, str(train_dir(cfg) / s)), s) for s in cfg.train.stages]
    out = []
    for spec, stage in listed:
        settings = cfg.engines[spec.engine or em.engine]
        engine = dataclasses.replace(settings, model=spec.model or settings.model)
        out.append(ModelToEval(spec.name, engine, stage))
    return out


def find_model(cfg: Config, name: str) -> ModelToEval:
    models = evaluated_models(cfg)
    for m in models:
        if m.name == name:
            return m
    raise ValueError(
        f"no evaluated model named {name!r} (eval_model.models: {', '.join(m.name for m in models)})"
    )


def fingerprint(model: str) -> str:
    """What the response cache keys a model by: a local folder by its files' sizes and times (so a
    checkpoint retrained in place is not answered from the old one's cache), a hub id by itself."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return model
    files = sorted({f for pattern in _WEIGHTS for f in folder.glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"{folder.resolve()}#{digest.hexdigest()[:16]}"
