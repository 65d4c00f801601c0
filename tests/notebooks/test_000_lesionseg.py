"""Chapter 000 (LesionSeg): its recipe, and the notebook under papermill with its ablation
parameters.

The recipe tests are fast (no notebook runs). The default run is tested centrally
(tests/test_notebooks.py); one papermill run here changes the network's upsampling, the reading
of Table 1 and the post-processing at once, at the smallest size and one epoch, and two short
ones check that a wrong parameter stops the chapter in its first code cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CHAPTERS, papermill
from PIL import Image

from lessons_lib.params import NOT_GIVEN, ParameterError
from lessons_lib.recipes import get_recipe
from lessons_lib.synth import make_dataset
from lessons_lib.training.optim import AdamSpec, Schedule

PATH = next(nb for nb in CHAPTERS if nb.stem == "000_lesionseg")
R = get_recipe("000_lesionseg")
SHORT = {"size": 32, "epochs": 1}  # 32: a multiple of 8 and at least 3 x 8 (reading B)


# -- the recipe ---------------------------------------------------------------------------------
def test_profiles_keep_their_values() -> None:
    full, smoke = vars(R.profile("full")), vars(R.profile("smoke"))
    assert {k: full[k] for k in ("dataset", "size", "reading", "upsample", "batch_size")} == {
        "dataset": "isic2017",
        "size": 448,
        "reading": "A",
        "upsample": "subpixel",
        "batch_size": 32,
    }
    assert (full["epochs"], full["patience"], full["lr"], full["hold_out"]) == (200, 10, 1e-3, 0.1)
    assert (full["threshold"], full["opening"]) == (0.5, "cross")
    assert (full["prepare_workers"], full["loader_workers"], full["n_gpus"]) == (2, 3, 1)
    assert (smoke["dataset"], smoke["size"], smoke["batch_size"]) == ("synthetic", 64, 8)
    assert (smoke["epochs"], smoke["patience"], smoke["n_synth"], smoke["synth_size"]) == (
        5,
        2,
        32,
        160,
    )
    assert (smoke["prepare_workers"], smoke["loader_workers"]) == (1, None)
    assert R.dry_run == {"images": 6}  # hold_out 0.1 of 6 keeps one


def test_paper_values() -> None:
    paper = {p.name: p.paper for p in R.params}
    assert (paper["size"], paper["batch_size"], paper["upsample"]) == (448, 32, "subpixel")
    assert (paper["threshold"], paper["opening"], paper["dataset"]) == (0.5, "cross", "isic2017")
    for name in ("reading", "epochs", "patience", "lr", "hold_out"):  # deviations
        assert paper[name] is NOT_GIVEN, name


@pytest.mark.parametrize(
    "given, words",
    [
        ({"opening": "bogus"}, ["parameter opening", "'cross', 'square', 'none'", "'bogus'"]),
        ({"size": 63}, ["parameter size", "a multiple of 8", "got 63"]),
        ({"size": "63"}, ["parameter size", "a multiple of 8"]),  # papermill's -p gives text
        ({"size": 16, "reading": "B"}, ["parameter size", "at least 24 with reading B"]),
        ({"reading": "C"}, ["parameter reading", "'A', 'B'"]),
        ({"upsample": "bilinar"}, ["parameter upsample", "did you mean 'bilinear'"]),
        ({"threshold": 1.0}, ["parameter threshold", "(0, 1)"]),
        ({"hold_out": 0.0}, ["parameter hold_out", "(0, 1)"]),
    ],
)
def test_wrong_parameters_are_refused(given: dict, words: list[str]) -> None:
    with pytest.raises(ParameterError) as err:
        R.resolve("smoke", given)
    for word in words:
        assert word in str(err.value)


def test_smallest_sizes_resolve() -> None:
    assert R.resolve("smoke", {"size": 16}).size == 16
    assert R.resolve("smoke", {"size": "24", "reading": "B"}).size == 24


def test_training_recipe() -> None:
    P = R.profile("full")  # noqa: N806
    assert R.network(P) == ("lesionseg", {"n_out": 2, "upsample": "subpixel", "reading": "A"})
    assert R.optimizer(P) == AdamSpec(
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        decoupled=False,
        decay_bn_and_bias=False,
    )
    assert R.schedule(P) == Schedule("constant")
    (dihedral,) = R.augmentation(P)
    assert type(dihedral).__name__ == "Dihedral" and dihedral.p == 1.0
    assert [type(t).__name__ for t in R.input_transforms(P)] == ["PerImageStandardize"]
    assert R.normalize(P) is None


def test_cost_counts_from_published_splits() -> None:
    estimate = R.estimate_cost("full")
    training, prediction = estimate.stages
    assert (training.images_per_epoch, training.epochs, training.batch_size) == (1800, 200, 32)
    assert training.images_evaluated == 200 * 200  # the held-out 10%, after every epoch
    assert prediction.images_evaluated == 3 * (150 + 600)  # valid + test, three openings
    assert estimate.parameters == 2_054_880


# -- the notebook -------------------------------------------------------------------------------
def _run(tmp_path: Path, **params) -> dict:
    out = tmp_path / "out"
    papermill(PATH, tmp_path / "executed.ipynb", {**SHORT, **params, "out_dir": str(out)})
    return json.loads((out / "metrics.json").read_text())


def _results(record: dict) -> dict[str, dict]:
    return {r["name"]: r for r in record["results"]}


@pytest.mark.notebooks
def test_wrong_parameters_stop_the_first_code_cell(tmp_path: Path) -> None:
    """Two wrong values in one run (a kernel each would show nothing more): both are named."""
    from papermill.exceptions import PapermillExecutionError

    given = {"opening": "bogus", "size": 63}
    out = tmp_path / "out"
    with pytest.raises(PapermillExecutionError) as err:
        papermill(PATH, tmp_path / "executed.ipynb", {**given, "out_dir": str(out)})
    assert err.value.ename == "ParameterError"
    for name in given:
        assert f"parameter {name}" in err.value.evalue
    assert not out.exists()  # stopped before the run folder was claimed
    cells = json.loads((tmp_path / "executed.ipynb").read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("ename") for o in c["outputs"])]
    # parameters, papermill's injected parameters, the Colab install cell, then the first cell
    assert failed == [3]


@pytest.mark.notebooks
def test_every_switch_at_once(tmp_path: Path) -> None:
    """Bilinear upsampling, reading B of Table 1 and the square opening, in one run: each
    switch shows in what the run records; and an external validation on another dataset."""
    other = make_dataset(tmp_path / "other", n=4, n_valid=1, n_test=1, size=96, seed=9)
    record = _run(
        tmp_path,
        upsample="bilinear",
        reading="B",
        opening="square",
        external_dataset="synthetic",
        external_data_dir=str(other),
    )
    assert record["chapter"] == "000_lesionseg" and record["profile"] == "smoke"
    params = record["params"]
    assert (params["upsample"], params["reading"], params["opening"]) == ("bilinear", "B", "square")
    assert params["batch_size"] == 8  # not given: the smoke profile's
    # the bilinear head has no subpixel filters (34,590 fewer than reading A's, 145,278 fewer
    # than reading B's), so the count is the same for both readings ...
    assert record["n_parameters"] == 2_020_290
    assert record["details"]["receptive_field_px"] == 109  # ... the receptive field is B's (A: 77)
    results = _results(record)
    assert set(results) == {  # the chosen opening first, the two others beside it
        "valid",
        "test",
        "valid_opening_none",
        "test_opening_none",
        "valid_opening_cross",
        "test_opening_cross",
        "external",
    }
    external = results["external"]  # every image of the other dataset, none trained on
    assert external["metrics"]["n_images"] == 6 and external["details"] == {"external": "synthetic"}
    assert external["method"] is None and external["reported"] == []  # the chapter's own model
    assert len(list((tmp_path / "out" / "predictions" / "external").glob("*.png"))) == 6
    # synthetic data: the paper's JA 0.642 (ISIC 2017 validation) is not beside it
    assert results["valid"]["reported"] == results["test"]["reported"] == []
    assert "opening square" in results["valid"]["evaluated_on"]
    assert results["valid_opening_cross"]["method"] == "opening cross"
    for r in results.values():
        assert r["metrics"]["n_images"] > 0 and 0.0 <= r["metrics"]["jaccard"] <= 1.0
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert len(history) == 2  # header + the one epoch
    masks = sorted((tmp_path / "out" / "predictions" / "valid").glob("*_segmentation.png"))
    assert len(masks) == results["valid"]["metrics"]["n_images"]
    assert max(Image.open(masks[0]).size) > SHORT["size"]  # back at the original size
    training = record["details"]["training"]  # what the run trained with, read back
    network = {"name": "lesionseg", "n_out": 2, "upsample": "bilinear", "reading": "B"}
    assert training["network"] == network
    assert training["schedule"] == {"policy": "constant"}
    assert [t["class"] for t in training["augmentation"]] == ["Dihedral"]
    assert training["augmentation"][0]["p"] == 1.0
    (group,) = training["optimizer_used"]["groups"]
    assert (group["beta1"], group["beta2"], group["eps"]) == (0.9, 0.999, 1e-8)
    assert (group["weight_decay"], group["lr"]) == (0.0, 1e-3)
