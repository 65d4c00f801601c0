"""A chapter trained on two processes (``-p n_gpus 2``): on this CPU-only machine, two CPU
processes with the gloo backend stand for two GPUs (lessons_lib.training.distributed).

The run must finish, write one ``metrics.json`` and one history row per epoch (the main process
writes; the other only trains), and its weights must load in a one-process run: ``predict``
rebuilds the network and loads ``models/final.pth`` here, in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, papermill
from PIL import Image

from lessons_lib.atomic import cache_dir
from lessons_lib.cli import main

pytestmark = pytest.mark.notebooks

NOTEBOOK = REPO / "notebooks" / "003_slsdeep.ipynb"
FAST = {"size": 32, "epochs": 2, "speed_iters": 1, "speed_warmup": 0}


def test_two_process_chapter_run_writes_once_and_its_weights_load(tmp_path: Path) -> None:
    out = tmp_path / "run"
    papermill(NOTEBOOK, tmp_path / "executed.ipynb", {"out_dir": str(out), "n_gpus": 2, **FAST})
    record = json.loads((out / "metrics.json").read_text())
    assert record["params"]["n_gpus"] == 2
    assert {r["name"] for r in record["results"]} == {"test", "valid"}
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1]  # each epoch once: written by the main process only
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"

    # the weights in a one-process run: predict the evaluated test images again
    spec = json.loads((out / "predictor.json").read_text())
    assert spec["models"][0]["weights"] == "models/final.pth"
    kind, name = record["data_identity"].split(":")
    assert kind == "synthetic"
    images = cache_dir() / "synthetic" / name / "ISIC-2017_Test_v2_Data"
    predicted = tmp_path / "predicted"
    assert (
        main(["predict", "--run", str(out), "--images", str(images), "--out", str(predicted)]) == 0
    )
    evaluated = sorted((out / "predictions" / "test").glob("*_segmentation.png"))
    masks = sorted(p.name for p in predicted.glob("*_segmentation.png"))
    assert evaluated and masks == [p.name for p in evaluated]
    assert sorted(p.name for p in predicted.iterdir()) == [".predict.json", *masks]
    for mask in evaluated:  # the same network and weights: the same masks
        again = np.asarray(Image.open(predicted / mask.name))
        assert np.mean(again != np.asarray(Image.open(mask))) < 1e-3, mask.name
