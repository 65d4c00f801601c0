"""Chapter 004 (Qi et al., VGG16 FCN) under papermill with its switches.

The default run (concatenation, both fusions compared) is tested for every chapter in
``tests/test_notebooks.py``. Here: FCN's sum fusion as the chapter's model (the comparison then
trains concatenation), and the augmentation and bilinear-deconvolution switches. Each run is as
short as the chapter allows: 32x32 inputs, one epoch of one batch of 6 synthetic images. The
network is the full 134 M-parameter one, so each model still takes seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, papermill

NOTEBOOK = REPO / "notebooks" / "004_vgg16_fcn.ipynb"
SHORT = {"size": 32, "epochs": 1, "n_train": 6, "batch_size": 6}


def run_chapter(tmp_path: Path, **params) -> tuple[Path, dict]:
    """Run the chapter with ``SHORT`` and ``params``; return its folder and ``metrics.json``."""
    out = tmp_path / "out"
    papermill(NOTEBOOK, tmp_path / "o.ipynb", {**SHORT, **params, "out_dir": str(out)})
    return out, json.loads((out / "metrics.json").read_text())


def check_results(record: dict, names: set[str]) -> dict[str, dict]:
    """Every evaluation is there, scored on every image, with no paper number beside it."""
    results = {r["name"]: r for r in record["results"]}
    assert set(results) == names
    for result in results.values():
        assert result["reported"] == {}  # the paper reports no number: none is invented
        metrics = result["metrics"]
        assert metrics["n_images"] > 0
        for key in ("jaccard", "threshold_jaccard", "pooled_jaccard", "dice", "accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, key
    return results


@pytest.mark.notebooks
def test_sum_fusion_as_the_chapters_model(tmp_path: Path) -> None:
    out, record = run_chapter(tmp_path, fusion="sum")
    assert record["params"]["fusion"] == "sum" and record["params"]["size"] == 32
    assert record["n_parameters"] == 134_309_900  # no fuse convolution: 26 fewer
    results = check_results(record, {"valid_sum", "test_sum", "valid_concat", "test_concat"})
    assert results["test_sum"]["method"] == "004_vgg16_fcn (fusion=sum)"
    assert results["test_concat"]["method"] is None  # concatenation is the paper's method
    assert record["details"]["fusions_trained"] == ["sum", "concat"]
    assert (out / "history.csv").is_file() and (out / "models" / "train.pth").is_file()
    assert (out / "fusion_concat" / "models" / "train.pth").is_file()
    for name in results:
        assert (out / f"per_image_{name}.csv").is_file()
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    expected = {"learning_curves", "ja_distribution", "fusion_pair", "overlays", "worst_cases"}
    assert expected <= figures


@pytest.mark.notebooks
def test_augmentation_and_bilinear_deconvolutions(tmp_path: Path) -> None:
    out, record = run_chapter(tmp_path, augment=True, deconv_init="bilinear", compare_fusion=False)
    assert record["params"]["augment"] is True
    assert record["params"]["deconv_init"] == "bilinear"
    results = check_results(record, {"valid_concat", "test_concat"})
    method = "004_vgg16_fcn (augment, deconv_init=bilinear)"
    assert all(r["method"] == method for r in results.values())
    assert record["details"]["fusions_trained"] == ["concat"]
    assert record["n_parameters"] == 134_309_926
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert "fusion_pair" not in figures and "learning_curves" in figures
    saved = list((out / "predictions" / "test_concat").glob("*_segmentation.png"))
    assert len(saved) == results["test_concat"]["metrics"]["n_images"]
