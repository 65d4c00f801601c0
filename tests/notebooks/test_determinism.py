"""Same seed, same CPU, same versions: two runs of a chapter give bit-identical results.

Chapter 003 runs twice at its smoke profile (at the smallest sizes of its ablation tests):
every metric mean and every per-image score must be equal to the last bit, and so must the
training history. (``chapter.setup`` seeds Python, NumPy and PyTorch and asks PyTorch for
deterministic algorithms; on a GPU some operations stay non-deterministic: see the book's
introduction, "Determinism".)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, papermill

pytestmark = pytest.mark.notebooks

NOTEBOOK = REPO / "notebooks" / "003_slsdeep.ipynb"
FAST = {"size": 32, "epochs": 1, "speed_iters": 1, "speed_warmup": 0}


def test_two_smoke_runs_are_bit_identical(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        papermill(NOTEBOOK, tmp_path / f"executed{i}.ipynb", {"out_dir": str(out), **FAST})
        outs.append(out)
    first, second = (json.loads((o / "metrics.json").read_text()) for o in outs)
    assert [r["metrics"] for r in first["results"]] == [r["metrics"] for r in second["results"]]
    csvs = sorted(p.name for p in outs[0].glob("per_image_*.csv"))
    assert csvs, "no per-image scores"
    for name in csvs:
        a, b = (pd.read_csv(o / name, index_col=0) for o in outs)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    history = [pd.read_csv(o / "history.csv") for o in outs]
    pd.testing.assert_frame_equal(history[0], history[1], check_exact=True)
