"""The cell that opens every chapter's code: on Google Colab, install this course's library.

A chapter opened from its page's Colab button runs in a fresh Colab machine that has PyTorch,
torchvision and most of the scientific stack, but not ``lessons_lib``: the chapter's imports
would fail. The first cell that runs after the parameters cell therefore installs the project
from the repository address the book is published from (``repository.url`` in ``_config.yml``,
the one place it is set), keeping the ``torch`` and ``torchvision`` Colab already has (pinned
with a pip constraints file, so that no dependency replaces Colab's CUDA build). Anywhere else
(a laptop, CI, the book build) the cell does nothing.

The cell is written from :func:`install_cell` into every chapter notebook (tagged
``hide-input``: the book folds its source) by
``python -m lessons_lib.book.colab`` (``make recipes``; ``make lint`` checks it with
``--check``), like the parameters cell is written from the recipe: change the address in
``_config.yml``, run ``make recipes``, and every chapter follows.

``LESSONS_INSTALL_FROM`` (an environment variable) installs from another source, any address
pip takes after ``lessons_lib @``: a fork's ``git+https://...`` or a local copy's ``file:///...``;
the project's test of the cell uses it to install from a local copy into a fresh environment
with a stub ``google.colab`` module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CONFIG = REPO / "_config.yml"
MARKER = "# Colab only"
"""How the cell begins: how :func:`sync` finds it."""
TAG = "hide-input"
"""The cell's tag: the book shows its source folded ("Show code cell source"), so that a
chapter's page opens with the paper, not with installation machinery (Colab and JupyterLab
show it as any cell)."""

TEMPLATE = """\
# Colab only (anywhere else this cell does nothing): install this course's library, lessons_lib,
# from the book's repository, keeping Colab's torch and torchvision. Written by `make recipes`.
import importlib.util

try:
    import google.colab  # noqa: F401
except ImportError:
    ON_COLAB = False
else:
    ON_COLAB = True
if ON_COLAB and not importlib.util.find_spec("lessons_lib"):
    import os
    import subprocess
    import sys
    import tempfile
    from importlib.metadata import version

    REPOSITORY = "git+{url}"
    source = os.environ.get("LESSONS_INSTALL_FROM", REPOSITORY)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        pins.write("".join(f"{{p}}=={{version(p)}}\\n" for p in ("torch", "torchvision")))
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", pins.name]
    subprocess.run([*pip, f"lessons_lib @ {{source}}"], check=True)
    importlib.invalidate_caches()"""


def repository_url(config: Path = CONFIG) -> str:
    """``repository.url`` of the book's ``_config.yml``.

    Raises:
        SystemExit: the file has no such entry (named).
    """
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    url = (settings.get("repository") or {}).get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise SystemExit(f"error: {config}: no repository url (https://...) under 'repository:'")
    return url


def install_cell(url: str) -> str:
    """The source of the install cell for the repository at ``url``."""
    return TEMPLATE.format(url=url)


def chapter_notebooks(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks that import the library: every notebook of ``notebooks``."""
    return sorted(notebooks.glob("*.ipynb"))


def _slot(nb: nbformat.NotebookNode) -> int:
    """Where the install cell belongs: right after the papermill parameters cell (the
    chapter's opening being title, parameters, then everything that runs), or first of the
    code cells where there is no parameters cell."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if tagged:
        return tagged[0] + 1
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return code[0] if code else len(nb.cells)


def sync(notebooks: Path = NOTEBOOKS, config: Path = CONFIG, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) each notebook's install cell: the cell right after
    the parameters cell. A notebook without one gets it inserted there (an install cell
    elsewhere is moved there).

    Returns:
        The notebooks whose cell differed.
    """
    wanted = install_cell(repository_url(config))
    differing = []
    for path in chapter_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        slot = _slot(nb)
        cell = nb.cells[slot] if slot < len(nb.cells) else None
        if cell is not None and cell.source == wanted and TAG in cell.metadata.get("tags", []):
            continue
        differing.append(path)
        if check:
            continue
        if cell is not None and cell.cell_type == "code" and cell.source.startswith(MARKER):
            cell.source = wanted
        else:
            nb.cells = [c for c in nb.cells if not c.source.startswith(MARKER)]
            cell = nbformat.v4.new_code_cell(wanted)
            nb.cells.insert(_slot(nb), cell)
        tags = cell.metadata.setdefault("tags", [])
        if TAG not in tags:
            tags.append(TAG)
        nbformat.write(nb, path)
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lessons_lib.book.colab", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if any differs")
    args = parser.parse_args(argv)
    differing = sync(check=args.check)
    for path in differing:
        print(f"{path.name}: Colab install cell {'differs' if args.check else 'written'}")
    if args.check and differing:
        print("run `make recipes` to write them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
