"""Chapter 003 (SLSDeep): its two ablation switches under papermill, at the smallest sizes.

The default run of the chapter is tested centrally (tests/test_notebooks.py); these runs check
that ``-p epe_weight 0`` (SLSDeep-EPE) and ``-p skips all`` (SLSDeep+ASC) train the variant,
compare it with its own row of the paper's Table 1 and write a complete run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, papermill

NOTEBOOK = REPO / "notebooks" / "003_slsdeep.ipynb"
# One epoch at 32x32 (encoder maps of 4x4) and one untimed + one timed speed pass of one image.
FAST = {"size": 32, "epochs": 1, "speed_iters": 1, "speed_warmup": 0}
PAPER_PARAMS = 60_226_628  # the paper-text reading (PPN 1024)
ASC_PARAMS = PAPER_PARAMS + 533_568  # plus the four 1x1 skip reductions


def _run(tmp_path: Path, **params) -> tuple[Path, dict]:
    out = tmp_path / "out"
    papermill(NOTEBOOK, tmp_path / "executed.ipynb", {"out_dir": str(out), **FAST, **params})
    return out, json.loads((out / "metrics.json").read_text())


def _check_run_folder(out: Path, record: dict, gflops: float) -> dict:
    """Common checks; returns the results by evaluation name."""
    results = {r["name"]: r for r in record["results"]}
    assert set(results) == {"test", "valid"}  # the synthetic data has the ISIC 2017 layout
    for result in results.values():
        metrics = result["metrics"]
        assert metrics["n_images"] == 8
        for key in ("jaccard", "dice", "pooled_jaccard", "pooled_dice", "accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert (out / f"per_image_{result['name']}.csv").is_file()
    assert results["valid"]["reported"] == {}  # Table 1 has test rows only
    for figure in ("learning_curves", "lr_schedule", "ja_distribution", "overlays"):
        assert (out / "figures" / f"{figure}.png").is_file(), figure
    assert (out / "models" / "train.pth").is_file()
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + FAST["epochs"]
    assert record["details"]["throughput"]["batch_size"] == 1
    assert record["details"]["gflop_per_image"] == pytest.approx(gflops, rel=0.01)  # at 384
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"
    return results


@pytest.mark.notebooks
def test_epe_weight_0_is_the_slsdeep_epe_ablation(tmp_path: Path) -> None:
    out, record = _run(tmp_path, epe_weight=0)
    assert record["params"]["epe_weight"] == 0 and record["params"]["skips"] == "one"
    results = _check_run_folder(out, record, gflops=242.97)
    test = results["test"]
    assert test["method"] == "SLSDeep-EPE" and record["details"]["variant"] == "SLSDeep-EPE"
    # Table 1, ISBI 2017 SLSDeep-EPE: the reference row on synthetic data
    assert test["reported"] == {
        "accuracy": 0.913,
        "dice": 0.826,
        "jaccard": 0.704,
        "sensitivity": 0.729,
        "specificity": 0.986,
    }
    assert record["n_parameters"] == PAPER_PARAMS


@pytest.mark.notebooks
def test_skips_all_is_the_slsdeep_asc_ablation(tmp_path: Path) -> None:
    out, record = _run(tmp_path, skips="all")
    assert record["params"]["skips"] == "all" and record["params"]["epe_weight"] == 0.5
    results = _check_run_folder(out, record, gflops=245.66)
    test = results["test"]
    assert test["method"] == "SLSDeep+ASC"
    assert test["reported"]["jaccard"] == 0.739 and test["reported"]["specificity"] == 0.905
    assert record["n_parameters"] == ASC_PARAMS
