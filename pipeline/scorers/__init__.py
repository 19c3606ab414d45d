"""The scorer registry: a config name (pruning.scorer, annotate, eval.scorers) to the scorer built
from its own config section, so stages never branch on scorer names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.answers import AnswerChecker
from pipeline.config import SCORER_SECTION, Config
from pipeline.engines import Engine, EnginePool
from pipeline.scorers.base import Scorer
from pipeline.scorers.critic import Critic
from pipeline.scorers.prm import MathShepherdPRM, QwenPRM
from pipeline.scorers.rollouts import RolloutScorer


@dataclass(frozen=True)
class Registered:
    section: str  # the config section the scorer is built from (config.SCORER_SECTION)
    build: Callable[[Any, Engine, Config, AnswerChecker], Scorer]  # (section, engine, config, checker)


_BUILDERS: dict[str, Callable[[Any, Engine, Config, AnswerChecker], Scorer]] = {
    Critic.name: lambda section, engine, cfg, checker: Critic(engine, section),
    MathShepherdPRM.name: lambda section, engine, cfg, checker: MathShepherdPRM(engine, section),
    QwenPRM.name: lambda section, engine, cfg, checker: QwenPRM(engine, section),
    RolloutScorer.name: lambda section, engine, cfg, checker: RolloutScorer(
        engine, checker, section, cfg.policy
    ),
}
SCORERS: dict[str, Registered] = {name: Registered(SCORER_SECTION[name], b) for name, b in _BUILDERS.items()}


def make_scorer(
    name: str, cfg: Config, pool: EnginePool, checker: AnswerChecker, section: Any = None
) -> Scorer:
    """The scorer registered as `name`, on the engine its section names. `section` stands in for
    the config's own section (an eval variant's)."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r} (known: {', '.join(SCORERS)})")
    reg = SCORERS[name]
    section = section if section is not None else getattr(cfg, reg.section)
    return reg.build(section, pool.get(section.engine), cfg, checker)


__all__ = ["SCORERS", "Registered", "make_scorer"]
