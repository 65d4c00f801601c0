"""``python -m lessons_lib.recipes sync [--check]``: write each chapter notebook's papermill
``parameters`` cell from its recipe (``make recipes``); ``--check`` only lists the notebooks
whose cell differs and exits 1 if any does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from lessons_lib.recipes import CHAPTERS, OTHER_CHAPTERS, get_recipe, parameters_cell

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def sync(
    notebooks: Path = NOTEBOOKS, check: bool = False, chapters: list[str] | None = None
) -> list[Path]:
    """Rewrite (or, with ``check``, compare) the chapters' ``parameters`` cells.

    Args:
        notebooks: The folder of the chapter notebooks.
        check: Compare only.
        chapters: Chapter ids (default: every chapter with a recipe).

    Returns:
        The notebooks whose cell differed from the recipe.
    """
    differing = []
    for chapter in chapters or [*CHAPTERS, *OTHER_CHAPTERS]:
        path = notebooks / f"{chapter}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise SystemExit(f"error: {path} has {len(cells)} cells tagged 'parameters', not 1")
        wanted = parameters_cell(get_recipe(chapter))
        if cells[0].source != wanted:
            differing.append(path)
            if not check:
                cells[0].source = wanted
                nbformat.write(nb, path)
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lessons_lib.recipes", description=__doc__)
    parser.add_argument("command", choices=["sync"])
    parser.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if any differs")
    args = parser.parse_intermixed_args(argv)
    differing = sync(check=args.check, chapters=args.chapters)
    for path in differing:
        print(
            f"{path.name}: parameters cell {'differs from' if args.check else 'written from'} "
            "its recipe"
        )
    if args.check and differing:
        print("run `make recipes` to write them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
