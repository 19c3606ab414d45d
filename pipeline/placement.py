"""Which engines a model stage's job opens, and so whether it needs a GPU: a job whose engines are
all endpoints asks a cluster for none (the Snakefile's `gpu` resource)."""

from __future__ import annotations

from pipeline.config import SCORER_SECTION, Config


def stage_engines(cfg: Config, stage: str) -> list[str]:
    """The engines a job of `stage` opens: trees, polish, or a thoughts method's name."""
    if stage == "trees":
        roles = [SCORER_SECTION[name] for name in (cfg.pruning.scorer, *cfg.annotate)]
        judge = [cfg.answer_check.judge.engine] if cfg.answer_check.judge else []
        return list(dict.fromkeys([*cfg.engine_names("policy", *roles), *judge]))
    if stage == "polish":
        return [cfg.polish.engine] if cfg.polish.enabled else []
    methods = {
        "propose-critique": [cfg.propose_critique.engine],
        "debate": [cfg.debate.engine, cfg.debate.critic_engine],
        "annotation": [cfg.annotation.engine],
        "outcome": [cfg.outcome.engine],
    }
    if stage not in methods:
        raise ValueError(f"no model stage named {stage!r} (trees, polish, {', '.join(methods)})")
    return list(dict.fromkeys(methods[stage]))


def gpus(cfg: Config, stage: str) -> int:
    """1 when the stage's job loads a model in-process (vLLM), 0 when it only talks to endpoints."""
    return int(any(cfg.engines[name].kind == "vllm" for name in stage_engines(cfg, stage)))
