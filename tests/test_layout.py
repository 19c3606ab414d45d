"""The layout keeps its promises: no import cycle, no module reaching into another's private names,
the dependency directions the README's Layout section draws, and every registry, default and enum
written once (the schema, the YAML and the dataclasses checked against each other)."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest
import yaml

from pipeline import config as config_module
from pipeline.config import DEFAULT_CONFIG, SCHEMA, SCORER_SECTION, Config, load

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "trees", "benchmarks", "tests")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every project import in `name`,
    inside functions too; a private attribute read off an imported module counts as a name taken."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    aliases[a.asname or a.name] = a.name
                    yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            if target.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                if f"{target}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
                    yield f"{target}.{a.name}", None, node.lineno
                else:
                    yield target, a.name, node.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield aliases[node.value.id], node.attr, node.lineno


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for name in MODULES:
        for target, _, _ in imports(name):
            if target in MODULES and target != name:
                g.add_edge(name, target)
    return g


def test_no_import_cycle():
    assert list(nx.simple_cycles(graph())) == []


def test_no_module_imports_another_modules_private_name():
    private = [
        f"{name}:{line} takes {target}.{taken}"
        for name in MODULES
        for target, taken, line in imports(name)
        if taken and taken.startswith("_") and not taken.startswith("__") and target != name
    ]
    assert private == []


@pytest.mark.parametrize(
    ("importer", "forbidden", "why"),
    [
        ("trees", ("pipeline", "benchmarks", "tests"), "the tree algorithms are pure"),
        ("pipeline", ("benchmarks", "tests"), "the pipeline runs without its tests"),
        ("benchmarks", ("tests",), "benchmarks run from an installed package"),
    ],
)
def test_dependencies_point_one_way(importer, forbidden, why):
    wrong = [(a, b) for a, b in graph().edges if a.split(".")[0] == importer and b.split(".")[0] in forbidden]
    assert wrong == [], why


def test_stages_are_not_libraries():
    """A stage reads, calls a library, writes: nothing but the CLI imports a stage module."""
    users = [
        (a, b)
        for a, b in graph().edges
        if b.startswith("pipeline.stages.")
        and a.split(".")[0] != "tests"
        and not a.startswith("pipeline.stages.")
    ]
    assert {a for a, _ in users} <= {"pipeline.cli"}, users


# ---- every default written once -----------------------------------------------------------------


def sections() -> Iterator[tuple[str, type, dict]]:
    """(config path, dataclass, the YAML's mapping) for each section the YAML fills a dataclass from."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    hints = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in raw.items():
        cls = _dataclass_of(hints.get(name))
        if cls is not None and isinstance(value, dict):
            yield name, cls, value
            for f in dataclasses.fields(cls):
                sub = _dataclass_of(f)
                if sub is not None and isinstance(value.get(f.name), dict):
                    yield f"{name}.{f.name}", sub, value[f.name]


def _dataclass_of(f: dataclasses.Field | None) -> type | None:
    if f is None:
        return None
    cls = getattr(config_module, str(f.type).split(" |")[0], None)
    return cls if dataclasses.is_dataclass(cls) else None


def test_dataclass_defaults_are_the_yamls():
    """A field given a default in code has the same value in config/config.yaml (the file users read)."""
    differ = []
    for where, cls, values in sections():
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            if dataclasses.is_dataclass(default):
                continue
            if default != _as_code(values[f.name], default):
                differ.append(f"{where}.{f.name}: code {default!r}, config.yaml {values[f.name]!r}")
    assert differ == []


def _as_code(value, default):
    """The YAML's value as the code holds it: eval variants become EvalVariant."""
    if isinstance(default, list) and default and isinstance(default[0], config_module.EvalVariant):
        return config_module.from_dict(yaml.safe_load(DEFAULT_CONFIG.read_text())).eval.variants
    return value


def test_every_yaml_field_is_in_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())

    def properties(node: dict) -> dict:
        # A section written as a $ref to a shared definition (problems, eval_model.benchmark) has the
        # definition's fields as well as its own.
        ref = node.get("$ref", "").removeprefix("#/$defs/")
        return {**(properties(schema["$defs"][ref]) if ref else {}), **node.get("properties", {})}

    missing = []
    for where, _, values in sections():
        node = schema["properties"][where.split(".")[0]]
        for part in where.split(".")[1:]:
            node = properties(node)[part]
        missing += [f"{where}.{k}" for k in values if k not in properties(node)]
    assert missing == []


def test_schema_enums_are_the_registries():
    """The schema lists scorers, methods and formats for editors and error messages; the registries
    are the truth, and the two must agree."""
    from pipeline.formats import FORMATS
    from pipeline.methods import METHODS
    from pipeline.scorers import SCORERS

    schema = yaml.safe_load(SCHEMA.read_text())
    props = schema["properties"]
    assert set(schema["$defs"]["scorer"]["enum"]) == set(SCORERS) == set(SCORER_SECTION)
    assert set(props["thoughts"]["properties"]["methods"]["items"]["enum"]) == set(METHODS)
    assert set(props["export"]["properties"]["formats"]["items"]["enum"]) == set(FORMATS)
    step_labels = set(props["export"]["properties"]["step_labels"]["enum"])
    assert step_labels == {"pruning", "tree", *SCORERS}


def test_the_shipped_config_loads():
    assert load().run


def test_every_cli_command_has_one_handler():
    import argparse

    from pipeline import cli

    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert not set(cli.TOOLS) & set(cli.STAGES)
    assert set(sub.choices) == set(cli.TOOLS) | set(cli.STAGES)
