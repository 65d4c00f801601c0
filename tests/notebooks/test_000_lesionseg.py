"""Chapter 000 (LesionSeg) under papermill with its ablation parameters.

The default run is tested centrally (tests/test_notebooks.py); these runs change the network's
upsampling, the reading of Table 1 and the post-processing, at the smallest size and one epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CHAPTERS, papermill
from PIL import Image

PATH = next(nb for nb in CHAPTERS if nb.stem == "000_lesionseg")
SHORT = {"size": 32, "epochs": 1}  # 32: a multiple of 8 and at least 3 x 8 (reading B)


def _run(tmp_path: Path, **params) -> dict:
    out = tmp_path / "out"
    papermill(PATH, tmp_path / "executed.ipynb", {**SHORT, **params, "out_dir": str(out)})
    return json.loads((out / "metrics.json").read_text())


def _results(record: dict) -> dict[str, dict]:
    return {r["name"]: r for r in record["results"]}


@pytest.mark.notebooks
def test_bilinear_upsampling_without_opening(tmp_path: Path) -> None:
    record = _run(tmp_path, upsample="bilinear", opening="none")
    assert record["chapter"] == "000_lesionseg" and record["profile"] == "smoke"
    assert record["params"]["upsample"] == "bilinear" and record["params"]["opening"] == "none"
    assert record["params"]["reading"] == "A" and record["params"]["batch_size"] == 8
    assert record["n_parameters"] == 2_020_290  # the bilinear head: 34,590 fewer than subpixel
    results = _results(record)
    assert set(results) == {
        "valid",
        "test",
        "valid_opening_cross",
        "test_opening_cross",
        "valid_opening_square",
        "test_opening_square",
    }
    assert results["valid"]["reported"] == {"jaccard": 0.642}
    assert results["test"]["reported"] == {}
    assert "opening none" in results["valid"]["split"]
    assert results["valid_opening_cross"]["method"] == "opening cross"
    for r in results.values():
        assert r["metrics"]["n_images"] > 0 and 0.0 <= r["metrics"]["jaccard"] <= 1.0
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert len(history) == 2  # header + the one epoch
    masks = sorted((tmp_path / "out" / "predictions" / "valid").glob("*_segmentation.png"))
    assert len(masks) == results["valid"]["metrics"]["n_images"]
    assert max(Image.open(masks[0]).size) > SHORT["size"]  # back at the original size


@pytest.mark.notebooks
def test_reading_b_with_square_opening(tmp_path: Path) -> None:
    record = _run(tmp_path, reading="B", opening="square")
    assert record["params"]["reading"] == "B" and record["params"]["opening"] == "square"
    assert record["n_parameters"] == 2_165_568  # 128 subpixel filters for output stride 8
    assert record["details"]["receptive_field_px"] == 109
    assert {"valid", "test", "valid_opening_none", "valid_opening_cross"} <= set(_results(record))
