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


def test_torch_ranges_admit_the_pinned_release() -> None:
    deps = dict(
        map(_split, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    )
    from packaging.specifiers import SpecifierSet

    assert "2.14.1" in SpecifierSet(deps["torch"]) and "0.29.1" in SpecifierSet(deps["torchvision"])
    assert "1.0.4" in SpecifierSet(deps["jupyter-book"]) and "2.0.0" not in SpecifierSet(
        deps["jupyter-book"]
    )


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "make test" in (REPO / "README.md").read_text()
