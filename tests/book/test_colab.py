"""Every notebook's first cell installs the library on Colab (``lessons_lib.book.colab``).

The cell is written from ``_config.yml``'s repository address and kept in step by ``make lint``;
off Colab it does nothing. A simulated Colab (a fresh virtual environment that sees this
environment's packages as Colab's preinstalled ones, but not ``lessons_lib``, and a stub
``google.colab`` module) runs the cell against a local copy of the project, then a chapter's
first cells: parameters, imports, environment and seed, the run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from lessons_lib.book import colab

REPO = Path(__file__).resolve().parents[2]


def test_every_notebook_opens_with_the_install_cell() -> None:
    assert colab.sync(check=True) == []
    url = colab.repository_url()
    for path in colab.chapter_notebooks():
        nb = nbformat.read(path, as_version=4)
        (at,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        install = nb.cells[at + 1]  # right after the parameters, before any heading
        assert install.cell_type == "code" and install.source.startswith(colab.MARKER)
        assert f"git+{url}" in install.source, path.name
        assert colab.TAG in install.metadata.tags, f"{path.name}: the book would unfold it"


def test_sync_follows_the_configured_address(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# T"),
        params,
        nbformat.v4.new_markdown_cell("## Setup"),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    nbformat.write(nb, notebooks / "t.ipynb")
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://example.org/a/b\n")
    assert colab.sync(notebooks, config, check=True) == [notebooks / "t.ipynb"]
    assert colab.sync(notebooks, config) == [notebooks / "t.ipynb"]  # after the parameters
    cells = nbformat.read(notebooks / "t.ipynb", as_version=4).cells
    wanted = ["a = 1", colab.install_cell("https://example.org/a/b"), "## Setup", "x = 1"]
    assert [c.source for c in cells[1:]] == wanted
    assert cells[2].metadata.tags == [colab.TAG]  # folded in the book
    assert colab.sync(notebooks, config, check=True) == []
    cells[2].metadata.tags = []  # the right source, but the book would show it unfolded
    nb.cells = cells
    nbformat.write(nb, notebooks / "t.ipynb")
    assert colab.sync(notebooks, config, check=True) == [notebooks / "t.ipynb"]
    colab.sync(notebooks, config)
    assert nbformat.read(notebooks / "t.ipynb", as_version=4).cells[2].metadata.tags == [colab.TAG]
    assert colab.sync(notebooks, config, check=True) == []
    config.write_text("repository:\n  url: https://example.org/fork/b\n")
    assert colab.sync(notebooks, config, check=True) == [notebooks / "t.ipynb"]
    colab.sync(notebooks, config)  # replaced, not inserted again
    cells = nbformat.read(notebooks / "t.ipynb", as_version=4).cells
    assert len(cells) == 5 and "git+https://example.org/fork/b" in cells[2].source
    config.write_text("title: no repository\n")
    with pytest.raises(SystemExit, match="no repository url"):
        colab.sync(notebooks, config)


def test_off_colab_the_cell_does_nothing(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the install cell ran pip off Colab")

    monkeypatch.setattr(subprocess, "run", refuse)
    exec(colab.install_cell(colab.repository_url()), {})  # the cell's own code


def _project_copy(dest: Path) -> Path:
    """What a clone holds that ``pip install`` needs: the metadata, README and the package."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(
        REPO / "lessons_lib", dest / "lessons_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest


@pytest.mark.notebooks
def test_a_chapter_opens_on_a_simulated_colab(tmp_path: Path) -> None:
    """Colab: packages preinstalled (torch, fastai...), no lessons_lib, ``google.colab``
    importable. The install cell installs the project (pinning the torch it finds); then chapter
    000's first cells run: its parameters, imports and run folder."""
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    stub = tmp_path / "stub"
    (stub / "google" / "colab").mkdir(parents=True)
    (stub / "google" / "__init__.py").write_text("")
    (stub / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab."""\n')
    # Colab's preinstalled packages: this environment's, whose own editable lessons_lib (a
    # .pth file of this site folder) is not processed from a path that a .pth file adds
    (site / "colab_preinstalled.pth").write_text(f"{stub}\n{sysconfig.get_paths()['purelib']}\n")
    project = _project_copy(tmp_path / "clone")
    nb = nbformat.read(REPO / "notebooks" / "000_lesionseg.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    work = tmp_path / "content"  # Colab's working folder
    work.mkdir()
    script = "\n\n".join(
        [
            code[0],  # parameters
            'out_dir = "run"\nepochs = 1',  # papermill's injected cell would go here
            code[1],  # the install cell
            "import lessons_lib\nprint('LIBRARY', lessons_lib.__file__)",
            code[2],  # imports, parameters checked, environment and seed, the run folder
            "print('RUN', run.out.resolve(), P.profile, P.epochs)",
        ]
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LESSONS_RUNS", "PYTHONHOME")
    }
    env |= {"LESSONS_INSTALL_FROM": project.as_uri(), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [python, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(
        line.split(" ", 1) for line in done.stdout.splitlines() if line[:4] in ("LIBR", "RUN ")
    )
    assert Path(lines["LIBRARY"]).is_relative_to(site)  # installed, not this checkout's
    assert lines["RUN"] == f"{work / 'run'} smoke 1"
    assert json.loads((work / "run" / "params.json").read_text())["chapter"] == "000_lesionseg"
    freeze = subprocess.run(
        [python, "-m", "pip", "list", "--path", str(site), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {p["name"].lower() for p in json.loads(freeze)}
    assert "lessons_lib" in installed or "lessons-lib" in installed
    assert not {"torch", "torchvision"} & installed  # Colab's own were kept
