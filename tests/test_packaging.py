"""pyproject.toml and environment.yml list the same packages and ranges; CI runs `make test`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _split(spec: str) -> tuple[str, str]:
    name, rest = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", spec.strip()).groups()
    return name.lower().replace("_", "-"), rest.replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(map(_split, project["dependencies"] + project["optional-dependencies"]["dev"]))
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(_split(s) for s in conda + pip if not s.startswith(("python=", "pip", "-e")))
    assert listed == wanted
    assert "-e ." in pip and "conda-forge" in env["channels"]


def test_installed_distributions_satisfy_the_dependencies() -> None:
    """Every requirement of pyproject.toml's ``dependencies`` is met by what is installed."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    unmet = []
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{spec}: not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{spec}: {installed} installed")
    assert not unmet, "; ".join(unmet)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "make test" in (REPO / "README.md").read_text()
