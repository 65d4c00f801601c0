"""nbval's reference outputs: the cells marked ``# NBVAL_CHECK_OUTPUT`` keep their output.

nbval (``pytest --nbval-lax``) compares a marked cell's output with the one committed in the
notebook, and only when the committed cell has an ``execution_count``. The notebooks are kept
without outputs (nbstripout), so the arrangement is:

* a marked cell carries ``"keep_output": true`` in its metadata, which nbstripout honours, and
  its output and execution count from a smoke run;
* nbstripout runs with ``--keep-count`` (``make format``, ``make lint``'s ``--verify``, the
  before-commit hook): it cannot keep counts per cell, so :func:`problems` (a test) checks that
  no other cell carries a count or an output.

``python -m lessons_lib.book.references [NOTEBOOK ...] [--executed DIR]`` (``make references``)
runs each notebook with papermill at its defaults (or reads already executed copies from
``DIR``) and writes the marked cells' outputs and counts into the committed notebooks. Run it
after changing anything a marked cell prints (a network's width, a recipe value): until then
``make test`` fails with nbval's diff.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat

MARKER = "# NBVAL_CHECK_OUTPUT"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def is_reference(cell: nbformat.NotebookNode) -> bool:
    """A code cell whose output nbval compares."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(MARKER)


def problems(path: Path) -> list[str]:
    """What keeps nbval from comparing (or what was committed by mistake) in ``path``."""
    found = []
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        if is_reference(cell):
            if cell.execution_count is None or not cell.outputs:
                found.append(f"{path.name} cell {i}: marked, but no committed output and count")
            if not cell.metadata.get("keep_output"):
                found.append(f"{path.name} cell {i}: marked, but no keep_output metadata")
        elif cell.execution_count is not None or cell.outputs:
            found.append(f"{path.name} cell {i}: an output or count on an unmarked cell")
    return found


def update(path: Path, executed: Path) -> int:
    """Copy the marked cells' outputs and counts from ``executed`` (the same notebook run by
    papermill) into ``path``; every other cell loses its count. Returns the cells updated."""
    nb = nbformat.read(path, as_version=4)
    runs = {c.source: c for c in nbformat.read(executed, as_version=4).cells}
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if is_reference(cell):
            if cell.source not in runs:
                raise SystemExit(
                    f"error: {executed} has no cell like {path.name}'s:\n{cell.source}"
                )
            count += 1
            run = runs[cell.source]
            cell.outputs = run.outputs
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
            cell.metadata["keep_output"] = True
        else:
            cell.execution_count = None
            cell.outputs = []
            cell.metadata.pop("keep_output", None)
    nbformat.write(nb, path)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons_lib.book.references", description=__doc__
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    parser.add_argument("--executed", type=Path, help="a folder of executed copies to read")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(
        p for p in NOTEBOOKS.glob("*.ipynb") if p.stem != "leaderboard"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            executed = (args.executed or Path(tmp)) / path.name
            if args.executed is None:
                import papermill as pm

                os.environ.setdefault("LESSONS_RUNS", str(Path(tmp) / "runs"))
                pm.execute_notebook(
                    str(path), str(executed), cwd=str(path.parent), progress_bar=False
                )
            print(f"{path.name}: {update(path, executed)} reference cell(s) written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
