"""Keep notebooks without outputs in git: ``python -m lessons_lib.nbtools strip|check-stripped``.

Used by ``make format`` (strip), ``make test`` (check) and the pre-commit hook.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lessons_lib.atomic import write_text

_VOLATILE_META = ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime")


def dirty_cells(nb: dict) -> list[int]:
    """Indices of code cells that carry outputs, execution counts or run metadata."""
    bad = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        if (
            cell.get("outputs")
            or cell.get("execution_count")
            or any(k in meta for k in _VOLATILE_META)
        ):
            bad.append(i)
    return bad


def strip_notebook(nb: dict) -> dict:
    """Remove outputs, execution counts and run metadata (in place); return ``nb``."""
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in _VOLATILE_META:
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("papermill", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    """Strip notebooks, or check that they are stripped (exit 1 naming the dirty ones)."""
    parser = argparse.ArgumentParser(prog="python -m lessons_lib.nbtools")
    parser.add_argument("action", choices=["strip", "check-stripped"])
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    failed = []
    for path in args.paths:
        nb = json.loads(path.read_text())
        if args.action == "strip":
            before = json.dumps(nb)
            strip_notebook(nb)
            if json.dumps(nb) != before:
                write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
                print(f"stripped {path}")
        elif dirty_cells(nb):
            failed.append(f"{path}: cells {dirty_cells(nb)} have outputs (run `make format`)")
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
