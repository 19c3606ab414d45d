"""Typed configuration: one YAML file, merged over the defaults, validated against config/schema.yaml."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipeline.engines.base import EngineSettings
from pipeline.formats import FORMATS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "config.yaml"
SCHEMA = PROJECT_ROOT / "config" / "schema.yaml"


# The config section each scorer is built from (its `engine` names the engine); the registry in
# pipeline/scorers builds them, and a test keeps the two and the schema's enum in step.
SCORER_SECTION = {
    "critic": "critic",
    "prm-math-shepherd": "prm",
    "prm-qwen": "prm",
    "monte-carlo": "rollouts",
}


class ConfigError(ValueError):
    """A config value that fails the schema; the message names the field."""


@dataclass
class FieldMap:
    problem: str
    answer: str
    id: str | None = "id"  # null: ids derived from the problem text


@dataclass
class ProblemsConfig:
    source: str
    fields: FieldMap
    shard_size: int = 16  # problems per shard; a benchmark read the same way has no shards
    split: str = "train"
    subset: str | None = None
    limit: int | None = None
    max_chars: int = 20000
    # How the answer column is read: auto | plain | gsm8k | boxed (pipeline/answers/reference.py)
    answer_format: str = "auto"


@dataclass
class PolicyConfig:
    engine: str
    prompt: str
    width: int
    max_depth: int
    temperature: float = 0.8
    top_p: float = 0.95
    max_step_tokens: int = 96
    step_delimiter: str = "\n\n"


@dataclass
class PruningConfig:
    scorer: str  # which scorer prunes: critic | prm-math-shepherd | prm-qwen | monte-carlo
    keep: int  # K: children kept per node


@dataclass
class PRMConfig:
    """A process reward model; needs an in-process vllm engine (Qwen style: runner pooling)."""

    engine: str = "local"
    step_tag: str = "ки"  # Math-Shepherd: tag after each step, "+"/"-" read at the newest one
    good: str = "+"
    bad: str = "-"
    separator: str = "<extra_0>"  # Qwen-PRM: step separator token
    threshold: float = 0.5  # score at or above it: verdict "correct"


@dataclass
class RolloutsConfig:
    """Monte-Carlo rollouts from each step with the policy's prompt."""

    engine: str = "local"
    m: int = 4
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95


@dataclass
class CriticConfig:
    engine: str
    prompt: str
    temperature: float = 0.0
    max_tokens: int = 128
    repetition_penalty: float = 1.3
    rationale_first: bool = False  # the JSON schema asks for the rationale before the verdict
    samples: int = 1  # k judgements per step: verdict by majority, score = share judged correct


@dataclass
class AnswerJudgeConfig:
    """An LLM that decides the answers math-verify cannot (pipeline/answers/judge.py)."""

    engine: str
    prompt: str = "prompts/answer_judge.yaml"
    temperature: float = 0.0
    max_tokens: int = 128


@dataclass
class AnswerCheckConfig:
    workers: int = 1
    timeout_s: int = 5
    unboxed: bool = False  # also read a final answer stated without \boxed{} at the end of a solution
    judge: AnswerJudgeConfig | None = None

    def __post_init__(self):
        if isinstance(self.judge, dict):
            self.judge = _build(AnswerJudgeConfig, self.judge)


@dataclass
class ThoughtsConfig:
    journeys_per_tree: int = 1
    max_trials: int = 2
    detour_depth: int = 2
    detour_probability: float = 1.0
    aggregation: str = "min"
    step_score: str = "scorer"  # what a step scores for the shortcut: the pruning scorer's, or tree value
    transitions: str = "prompts/transitions.yaml"
    # How long thoughts are built (pipeline/methods/): tree = the DFS walk over the trees stage's tree.
    methods: list[str] = field(default_factory=lambda: ["tree"])


@dataclass
class ProposeCritiqueConfig:
    """The policy writes step by step and picks an action after each step (pipeline/methods/propose_critique.py)."""

    engine: str = "local"
    prompt: str = "prompts/propose_critique.yaml"
    max_steps: int = 12  # policy paragraphs (steps and reflections) per problem
    max_retries: int = 2  # wrong terminations answered with "the answer is wrong" before giving up
    temperature: float = 0.8
    top_p: float = 0.95
    max_step_tokens: int = 96
    action_max_tokens: int = 96  # the JSON action; a reply cut here is a malformed action
    action_temperature: float = 0.0


@dataclass
class DebateConfig:
    """A policy agent writes steps, a critic agent judges each (pipeline/methods/debate.py)."""

    engine: str = "local"  # the policy agent
    critic_engine: str | None = None  # None: the critic section's engine
    prompt: str = "prompts/debate.yaml"
    max_steps: int = 12  # policy steps per problem, corrections included
    temperature: float = 0.8
    top_p: float = 0.95
    max_step_tokens: int = 96
    critic_max_tokens: int = 128
    critic_temperature: float = 0.0


@dataclass
class AnnotationFields:
    """Columns of the annotation source; a row matches a problem by id, else by its problem text."""

    annotation: str = "annotation"
    id: str | None = "id"
    problem: str | None = "problem"


@dataclass
class AnnotationConfig:
    """Human annotations expanded into long thoughts by an LLM (pipeline/methods/annotation.py)."""

    source: str = "pipeline/data/annotated_sample.jsonl"
    fields: AnnotationFields = field(default_factory=AnnotationFields)
    split: str = "train"  # Hugging Face datasets only
    subset: str | None = None
    engine: str | None = None  # None: the polish section's engine
    prompt: str = "prompts/annotation.yaml"
    temperature: float = 0.3
    max_tokens: int = 512
    repetition_penalty: float = 1.0
    min_step_similarity: float = 80.0  # the polish guard's fuzzy match, for each attempt and correction
    attempts: int = 3  # tries per annotation; each retry is told which checks failed

    def __post_init__(self):
        if isinstance(self.fields, dict):
            self.fields = _build(AnnotationFields, self.fields)


@dataclass
class OutcomeConfig:
    """Full solutions sampled per problem, for outcome-level preference pairs (pipeline/methods/outcome.py)."""

    engine: str | None = None  # None: the policy section's engine
    prompt: str = "prompts/outcome.yaml"
    samples: int = 8  # N solutions per problem (the paper: 20)
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    pairs_per_problem: int = 5  # K correct-vs-wrong pairs per problem (the paper: 5)


@dataclass
class PolishConfig:
    enabled: bool
    engine: str
    prompt: str
    temperature: float = 0.3
    max_tokens: int = 1024  # cap on each attempt's token budget
    repetition_penalty: float = 1.0
    min_step_similarity: float = 80.0
    attempts: int = 2  # tries per journey; each retry is told which guard checks failed
    budget_factor: float = 1.5  # an attempt's budget: ceil(factor * raw thought tokens) + margin
    budget_margin: int = 64
    # When none of a shard's first N journeys passes in `attempts`, the rest get one attempt each.
    give_up_after: int | None = 4


@dataclass
class ExportConfig:
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    pairs_per_problem: int = 5
    step_pairs_per_problem: int = 8
    step_pairs_per_node: int = 2
    revision_max_wrong: int = 4
    # stepwise labels: the pruning scorer's verdicts, a scorer in annotate, or tree (trees/values.py)
    step_labels: str = "pruning"
    min_yield: float | None = None  # fail the run when fewer problems than this share get a journey
    push_to_hub: str | None = None  # a Hugging Face dataset repo id, or file:///folder for a local copy


@dataclass
class EvalVariant:
    """A scorer evaluated under its own name, its config section overlaid by `overrides`."""

    name: str
    scorer: str
    overrides: dict[str, Any]


@dataclass
class EvalConfig:
    """Scorer evaluation on step-labelled solutions (pipeline/stages/eval_scorer.py)."""

    source: str = "pipeline/data/step_labels_sample.jsonl"
    layout: str = "processbench"  # processbench | prm800k | math-shepherd
    fields: dict[str, str | None] = field(default_factory=dict)  # over the layout's own columns
    split: str = "test"
    subset: str | None = None
    limit: int | None = None
    step_tag: str = "ки"  # math-shepherd: the tag closing each step
    scorers: list[str] = field(default_factory=lambda: ["critic"])
    variants: list[EvalVariant] = field(
        default_factory=lambda: [
            EvalVariant("rationale-first", "critic", {"rationale_first": True, "max_tokens": 256}),
            EvalVariant("vote-5", "critic", {"samples": 5, "temperature": 0.7}),
        ]
    )
    group_by: list[str] = field(default_factory=lambda: ["category"])
    thresholds: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 10)])
    batch_size: int = 512  # steps per engine call; the cache is committed after each


@dataclass
class TrainConfig:
    """The workflow's `train` rule (python -m pipeline train takes the same as flags)."""

    model: str | None = None  # None: the policy engine's model, which grew the data
    stages: list[str] = field(default_factory=lambda: ["shortcut", "journey", "shortcut_control"])
    max_steps: int = -1  # per stage; -1: the paper's epochs
    batch_size: int = 8
    learning_rate: float | None = None
    max_length: int = 2048


@dataclass
class EvalModelSpec:
    name: str
    model: str | None = None  # a checkpoint folder or hub id; None: the engine's own model
    engine: str | None = None  # None: eval_model.engine


@dataclass
class EvalModelConfig:
    """Trained models on held-out problems (python -m pipeline eval-model)."""

    benchmark: ProblemsConfig
    models: list[EvalModelSpec] | None = None  # None: the base model and each train stage's checkpoint
    engine: str = "local"
    prompt: str = "prompts/eval_model.yaml"
    max_tokens: int = 512
    samples: int = 4  # sampled answers per problem for pass@k and maj@k; 0: greedy only
    temperature: float = 0.8
    top_p: float = 0.95
    unboxed: bool = True  # also read an answer stated without \boxed{} at the end of an output


@dataclass
class Config:
    run: str
    output_root: str
    seed: int
    problems: ProblemsConfig
    engines: dict[str, EngineSettings]
    policy: PolicyConfig
    pruning: PruningConfig
    annotate: list[str]
    critic: CriticConfig
    prm: PRMConfig
    rollouts: RolloutsConfig
    answer_check: AnswerCheckConfig
    thoughts: ThoughtsConfig
    polish: PolishConfig
    export: ExportConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    propose_critique: ProposeCritiqueConfig = field(default_factory=ProposeCritiqueConfig)
    debate: DebateConfig = field(default_factory=DebateConfig)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_model: EvalModelConfig | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / self.run

    def engine_names(self, *roles: str) -> list[str]:
        """The engines behind roles (policy, critic, polish, prm, rollouts), without repeats."""
        return list(dict.fromkeys(getattr(self, role).engine for role in roles))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(raw: dict) -> None:
    """Raise ConfigError naming the first bad field (schema, then cross-field engine references)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    for name, engine in (raw.get("engines") or {}).items():
        if isinstance(engine, dict) and "api_key" in engine:
            raise ConfigError(
                f"config field engines.{name}.api_key: keys are never read from the config (it is "
                f"copied into the run folder); put the key in an environment variable and name that "
                f"variable in engines.{name}.api_key_env"
            )
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message
        if where.endswith(".api_key_env"):
            # Never echo the value: a key pasted here by mistake would end up in logs.
            message = "must be the name of an environment variable (letters, digits, _), not the key"
        raise ConfigError(f"config field {where}: {message}")
    policy = raw["policy"]
    if policy.get("temperature") == 0 and policy["width"] > 1:
        raise ConfigError("config field policy.temperature: must be > 0 to sample width > 1 different steps")
    for section in ("policy", "critic", "polish", "prm", "rollouts"):
        if section not in raw:
            continue
        name = raw[section]["engine"]
        if name not in raw["engines"]:
            known = ", ".join(sorted(raw["engines"]))
            raise ConfigError(f"config field {section}.engine: no engine named {name!r} (engines: {known})")
    _check_method_engines(raw)
    _check_eval_model(raw)
    judge = raw.get("answer_check", {}).get("judge")
    if judge and judge["engine"] not in raw["engines"]:
        known = ", ".join(sorted(raw["engines"]))
        raise ConfigError(
            f"config field answer_check.judge.engine: no engine named {judge['engine']!r} (engines: {known})"
        )
    step_labels = raw.get("export", {}).get("step_labels", "pruning")
    if step_labels not in ("pruning", "tree") and step_labels not in raw.get("annotate", []):
        raise ConfigError(
            f"config field export.step_labels: {step_labels!r} is not in annotate, so no step carries its verdict"
        )
    _check_samples(raw.get("critic", {}), "critic")
    _check_eval(raw, schema)
    scorers = [raw["pruning"]["scorer"], *raw.get("annotate", [])]
    if any(s.startswith("prm") for s in scorers) and raw["engines"][raw["prm"]["engine"]]["kind"] != "vllm":
        raise ConfigError(
            "config field prm.engine: a PRM reads token probabilities, which needs a kind: vllm engine"
        )


def _check_method_engines(raw: dict) -> None:
    """The thoughts methods' sections name engines like the other sections do."""
    known = ", ".join(sorted(raw["engines"]))
    for section, key in (
        ("propose_critique", "engine"),
        ("debate", "engine"),
        ("debate", "critic_engine"),
        ("annotation", "engine"),
        ("outcome", "engine"),
    ):
        name = (raw.get(section) or {}).get(key)
        if name is not None and name not in raw["engines"]:
            raise ConfigError(f"config field {section}.{key}: no engine named {name!r} (engines: {known})")


def _check_eval_model(raw: dict) -> None:
    ev = raw.get("eval_model")
    if not ev:
        return
    known = ", ".join(sorted(raw["engines"]))
    named = [("eval_model.engine", ev.get("engine", "local"))]
    named += [
        (f"eval_model.models.{i}.engine", m["engine"])
        for i, m in enumerate(ev.get("models") or [])
        if m.get("engine")
    ]
    for where, name in named:
        if name not in raw["engines"]:
            raise ConfigError(f"config field {where}: no engine named {name!r} (engines: {known})")
    seen: set[str] = set()
    for i, m in enumerate(ev.get("models") or []):
        if m["name"] in seen:
            raise ConfigError(f"config field eval_model.models.{i}.name: {m['name']!r} is already evaluated")
        seen.add(m["name"])
    _check_samples({"samples": ev.get("samples", 4), "temperature": ev.get("temperature", 0.8)}, "eval_model")


def _check_samples(section: dict, where: str) -> None:
    samples = section.get("samples", 1)
    if samples > 1 and section.get("temperature", 0.0) == 0:
        raise ConfigError(
            f"config field {where}.samples: {samples} judgements need {where}.temperature > 0 "
            "(greedy decoding gives the same judgement every time)"
        )


def _check_eval(raw: dict, schema: dict) -> None:
    """Each eval variant is its scorer's section with the variant's fields over it: the result must
    pass that section's schema, and names must not repeat."""
    ev = raw.get("eval", {})
    names = list(ev.get("scorers", ["critic"]))
    for i, variant in enumerate(ev.get("variants", [])):
        where = f"eval.variants.{i}"
        if variant["name"] in names:
            raise ConfigError(f"config field {where}.name: {variant['name']!r} is already evaluated")
        names.append(variant["name"])
        section = SCORER_SECTION[variant["scorer"]]
        section_schema = schema["properties"][section]
        overrides = _overrides(variant)
        for name in overrides:
            if name not in section_schema["properties"]:
                known = ", ".join(section_schema["properties"])
                raise ConfigError(f"config field {where}.{name}: not a field of {section} ({known})")
        merged = {**raw.get(section, {}), **overrides}
        validator = jsonschema.Draft202012Validator({**section_schema, "$defs": schema["$defs"]})
        for err in sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path)):
            field_path = ".".join(str(p) for p in err.absolute_path)
            raise ConfigError(f"config field {where}.{field_path}: {err.message}")
        if merged["engine"] not in raw["engines"]:
            raise ConfigError(f"config field {where}.engine: no engine named {merged['engine']!r}")
        _check_samples(merged, where)


def _overrides(variant: dict) -> dict:
    return {k: v for k, v in variant.items() if k not in ("name", "scorer")}


def _build(cls, data: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def from_dict(raw: dict) -> Config:
    validate(raw)
    return Config(
        run=raw["run"],
        output_root=raw["output_root"],
        seed=raw["seed"],
        problems=_problem_source(raw["problems"]),
        engines={n: EngineSettings(name=n, **e) for n, e in raw["engines"].items()},
        policy=_build(PolicyConfig, raw["policy"]),
        pruning=_build(PruningConfig, raw["pruning"]),
        annotate=list(raw.get("annotate", [])),
        critic=_build(CriticConfig, raw["critic"]),
        prm=_build(PRMConfig, raw.get("prm", {})),
        rollouts=_build(RolloutsConfig, raw.get("rollouts", {})),
        answer_check=_build(AnswerCheckConfig, raw.get("answer_check", {})),
        thoughts=_build(ThoughtsConfig, raw.get("thoughts", {})),
        polish=_build(PolishConfig, raw["polish"]),
        export=_build(ExportConfig, raw.get("export", {})),
        eval=_build_eval(raw.get("eval", {})),
        propose_critique=_build(ProposeCritiqueConfig, raw.get("propose_critique", {})),
        debate=_build_debate(raw),
        annotation=_build(AnnotationConfig, {"engine": raw["polish"]["engine"], **_set(raw, "annotation")}),
        outcome=_build(OutcomeConfig, {"engine": raw["policy"]["engine"], **_set(raw, "outcome")}),
        train=_build(TrainConfig, _set(raw, "train")),
        eval_model=_build_eval_model(raw["eval_model"]) if "eval_model" in raw else None,
        raw=raw,
    )


def _build_debate(raw: dict) -> DebateConfig:
    debate = _build(DebateConfig, raw.get("debate", {}))
    if debate.critic_engine is None:  # the critic agent defaults to the critic's model
        debate.critic_engine = raw["critic"]["engine"]
    return debate


def _problem_source(data: dict) -> ProblemsConfig:
    return _build(ProblemsConfig, {**data, "fields": _build(FieldMap, data["fields"])})


def _build_eval_model(data: dict) -> EvalModelConfig:
    models = data.get("models")
    return _build(
        EvalModelConfig,
        {
            **data,
            "benchmark": _problem_source(data["benchmark"]),
            "models": None if models is None else [_build(EvalModelSpec, m) for m in models],
        },
    )


def _set(raw: dict, section: str) -> dict:
    """A section's fields given a value; null ones (an engine left to its default) are left out."""
    return {k: v for k, v in (raw.get(section) or {}).items() if v is not None}


def _build_eval(data: dict) -> EvalConfig:
    variants = [EvalVariant(v["name"], v["scorer"], _overrides(v)) for v in data.get("variants", [])]
    return _build(EvalConfig, {**data, "variants": variants})


def load(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """The defaults, then the file at `path` (if any), then `overrides`, validated."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if path is not None:
        try:
            # Loaded from the open file, so the error's position names the file, not "<unicode string>".
            with open(path, encoding="utf-8") as f:
                user = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        raw = deep_merge(raw, user)
    if overrides:
        raw = deep_merge(raw, overrides)
    return from_dict(raw)
