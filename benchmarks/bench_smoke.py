"""A student's first run: each chapter's smoke profile, as papermill runs it, timed and weighed.

Run it with ``python benchmarks/bench_smoke.py [chapter ...]`` (or ``python benchmarks/run.py
smoke``). Each chapter notebook runs at its defaults (the smoke profile: synthetic data on the
CPU) in a fresh folder, with a fresh data cache so that generating and preparing the synthetic
data is counted, as on a student's first run. Targets: at most 3 minutes and 2 GiB (the summed
PSS of papermill and its kernel, :mod:`measure`) per chapter on 2 quiet cores. Both need the
machine to itself: another busy process slows the run and the figure says nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from measure import GB, measure

REPO = Path(__file__).resolve().parents[1]
MAX_SECONDS = 180.0
MAX_GIB = 2.0


def run(names: list[str] | None = None) -> list[dict]:
    """Rows: per chapter, the smoke run's wall time and peak memory, each with its target.

    ``names``: chapter ids (default: every chapter with a recipe, and the data chapter).
    """
    from lessons_lib.recipes import CHAPTERS, OTHER_CHAPTERS

    rows = []
    for chapter in names or [*CHAPTERS, *OTHER_CHAPTERS]:
        notebook = REPO / "notebooks" / f"{chapter}.ipynb"
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            env = {**os.environ, "LESSONS_RUNS": f"{tmp}/runs", "LESSONS_CACHE": f"{tmp}/cache"}
            command = [sys.executable, "-m", "papermill", str(notebook), f"{tmp}/out.ipynb"]
            command += ["--cwd", str(notebook.parent), "--no-progress-bar"]
            result = measure(command, env=env, stdout=sys.stderr, stderr=sys.stderr)
        if result["returncode"] != 0:
            raise RuntimeError(f"{chapter}: the smoke run failed (exit {result['returncode']})")
        rows += [
            _row(f"{chapter} smoke run: wall time", result["seconds"], "s", MAX_SECONDS),
            _row(f"{chapter} smoke run: peak memory", result["peak_bytes"] / GB, "GiB", MAX_GIB),
        ]
    return rows


def _row(name: str, value: float, unit: str, target: float) -> dict:
    ok = value <= target
    return {"benchmark": name, "value": value, "unit": unit, "target": target, "ok": ok}


if __name__ == "__main__":
    from chapters import names_from_command_line
    from table import print_table

    from lessons_lib.recipes import OTHER_CHAPTERS

    print_table(run(names=names_from_command_line(__doc__, others=OTHER_CHAPTERS)))
