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
    """CI runs the README's test command, after installing only system tools the README names
    for it (the RAR tools of PH2's download tests)."""
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    commands = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands[-1] == "make test" and commands.count("make test") == 1
    assert "make test" in readme
    installs = [line for line in commands if "apt-get install" in line]
    assert installs, "the RAR tools' install step is gone: their tests would skip"
    for line in installs:
        packages = line.split("apt-get install", 1)[1].split(">")[0].split()
        for package in (p for p in packages if not p.startswith("-")):
            assert package in readme, f"{package} is installed by CI but not named in the README"
