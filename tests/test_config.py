"""Configuration: the shipped defaults validate, and a bad value fails naming its field, on both sides
(pipeline.config.load and the Snakefile's snakemake.utils.validate read the same schema)."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.config import DEFAULT_CONFIG, SCHEMA, Config, ConfigError, deep_merge, load

OPENAI_ENGINE = {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:8000/v1"}

# (overrides, text the error must contain): each breaks one rule of the schema.
SCHEMA_BREAKERS = [
    pytest.param({"policy": {"width": 0}}, "policy.width", id="width-zero"),
    pytest.param({"pruning": {"keep": "two"}}, "pruning.keep", id="keep-not-int"),
    pytest.param({"problems": {"shard_size": 0}}, "problems.shard_size", id="shard-size-zero"),
    pytest.param({"problems": {"max_chars": 0}}, "problems.max_chars", id="max-chars-zero"),
    pytest.param({"problems": {"fields": {"problem": ""}}}, "problems.fields.problem", id="empty-mapping"),
    pytest.param({"run": "has spaces"}, "run", id="run-name"),
    pytest.param({"bogus": 1}, "bogus", id="unknown-top-level-key"),
    pytest.param({"policy": {"widht": 3}}, "widht", id="misspelt-nested-key"),
    pytest.param(
        {"engines": {"remote": {"kind": "openai", "model": "m"}}},
        "engines.remote",
        id="openai-without-base-url",
    ),
    pytest.param({"engines": {"local": {"kind": "tgi"}}}, "engines.local.kind", id="unknown-engine-kind"),
]


def shipped() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_shipped_config_validates():
    cfg = load()
    assert isinstance(cfg, Config)
    assert cfg.problems.shard_size >= 1
    assert cfg.policy.engine in cfg.engines


@pytest.mark.parametrize("overrides, names", SCHEMA_BREAKERS)
def test_bad_value_fails_naming_the_field(overrides, names):
    with pytest.raises(ConfigError, match="config field") as err:
        load(overrides=overrides)
    assert names in str(err.value)


def test_openai_engine_without_base_url_says_what_is_missing():
    with pytest.raises(ConfigError, match="base_url"):
        load(overrides={"engines": {"remote": {"kind": "openai", "model": "m"}}})


def test_openai_engine_with_base_url_is_accepted():
    cfg = load(overrides={"engines": {"remote": OPENAI_ENGINE}, "critic": {"engine": "remote"}})
    assert cfg.critic.engine == "remote"
    assert cfg.engines["remote"].base_url == OPENAI_ENGINE["base_url"]


@pytest.mark.parametrize("section", ["policy", "critic", "polish"])
def test_stage_naming_a_missing_engine_fails(section):
    with pytest.raises(ConfigError, match=rf"{section}\.engine.*'nope'.*local"):
        load(overrides={section: {"engine": "nope"}})


def test_user_file_and_overrides_deep_merge_over_the_defaults(tmp_path):
    path = tmp_path / "user.yaml"
    path.write_text("policy:\n  width: 2\nproblems:\n  fields: {id: null}\n")

    cfg = load(path, overrides={"policy": {"max_depth": 7}})

    defaults = shipped()
    assert (cfg.policy.width, cfg.policy.max_depth) == (2, 7)
    assert cfg.policy.temperature == defaults["policy"]["temperature"]
    assert cfg.policy.step_delimiter == defaults["policy"]["step_delimiter"]
    assert cfg.problems.fields.id is None
    assert cfg.problems.fields.problem == defaults["problems"]["fields"]["problem"]
    assert cfg.problems.source == defaults["problems"]["source"]


def test_deep_merge_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [1]}}
    merged = deep_merge(base, {"a": {"b": 2}})
    merged["a"]["c"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}}
    assert merged == {"a": {"b": 2, "c": [1, 2]}}


def snakemake_validate(raw: dict) -> None:
    """What the Snakefile runs; imported here so an install without snakemake skips, not errors."""
    utils = pytest.importorskip("snakemake.utils")
    utils.validate(copy.deepcopy(raw), str(SCHEMA))


@pytest.mark.snakemake
def test_snakemake_accepts_the_shipped_config():
    snakemake_validate(shipped())


@pytest.mark.snakemake
@pytest.mark.parametrize("overrides, names", SCHEMA_BREAKERS)
def test_snakemake_rejects_what_the_pipeline_rejects(overrides, names):
    raw = deep_merge(shipped(), overrides)
    with pytest.raises(ConfigError):
        load(overrides=overrides)
    workflow_error = pytest.importorskip("snakemake.exceptions").WorkflowError
    with pytest.raises(workflow_error, match="Error validating config"):
        snakemake_validate(raw)


@pytest.mark.parametrize("field", ["api_key", "api_key_env"])
def test_a_key_in_the_config_is_refused_without_repeating_it(field):
    engine = {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", field: "sk-SECRET-0123"}
    with pytest.raises(ConfigError, match=f"engines.remote.{field}") as err:
        load(overrides={"engines": {"remote": engine}})
    assert "environment variable" in str(err.value)
    assert "SECRET" not in str(err.value)
