"""Every chapter's ``laptop`` profile as a dry run on real PH2 cases (the profile's dataset, in
its publisher's layout), skipped when the real samples are absent.

The laptop profile trains on PH2 at a CPU's sizes; its dry run keeps everything but the length
(one epoch per stage, at most two batches of images per split; the batch halved here, so half
the training images): the seeded PH2 split, the
profile's input sizes, every stage, fold and model, evaluation at PH2's original size, the
classical baseline scored on the same test images beside the chapter's number, the figures and
``metrics.json``. The ImageNet weights cannot be downloaded here, so the chapters that start
from them run with ``pretrained=False`` (the profile's ``True`` is checked by the recipe tests).
Chapter 002 also scores the real HAM10000 sample as its external dataset (a user's own
``folder`` layout, 600x450 images).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, papermill
from PIL import Image

from lessons_lib.atomic import jsonable
from lessons_lib.data.split import split_sizes
from lessons_lib.recipes import CHAPTERS, get_recipe

pytestmark = [pytest.mark.notebooks, pytest.mark.realdata]

PH2_CASES = 20  # the sample's cases; its seeded split: 14 training, 2 validation, 4 test


@pytest.mark.parametrize("stem", list(CHAPTERS))
def test_laptop_profile_dry_run_on_real_ph2(
    stem: str, samples: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "cache"))
    recipe = get_recipe(stem)
    out = tmp_path / "run"
    params = {
        "profile": "laptop",
        "dry_run": True,
        "data_dir": str(samples / "ph2-sample"),
        "out_dir": str(out),
    }
    if recipe.weights is not None:
        params["pretrained"] = False  # no download here
    laptop = vars(recipe.profile("laptop"))
    for p in recipe.params:  # half the batch: half the training images of a dry run, same path
        if p.role == "batch_size":
            value = laptop[p.name]
            halved = [v // 2 for v in value] if isinstance(value, tuple) else value // 2
            params[p.name] = str(halved)
    if stem == "002_resnet34_unet":
        params["external_dataset"] = "folder"
        params["external_data_dir"] = str(samples / "ham10000-sample")
    papermill(REPO / "notebooks" / f"{stem}.ipynb", tmp_path / "executed.ipynb", params)

    record = json.loads((out / "metrics.json").read_text())
    assert record["profile"] == "laptop" and record["dataset"] == "ph2"
    assert record["params"]["dry_run"] is True
    # every other value is the profile's own (overwrite is not recorded)
    for p in recipe.params:
        if p.name not in {*params, *recipe.dry_run, "overwrite"} and p.role != "epochs":
            assert record["params"][p.name] == jsonable(laptop[p.name]), p.name

    n_test = split_sizes(PH2_CASES)["test"]
    beside = record["details"]["baseline"]["test"]
    assert beside["n_images"] == n_test
    assert beside["gap"] == pytest.approx(beside["jaccard"] - beside["baseline_jaccard"], abs=2e-4)
    ours_name = next(
        r["name"]
        for r in record["results"]
        if r["metrics"]["n_images"] == n_test and r["name"].startswith(("test", "official_test"))
    )
    ours = pd.read_csv(out / f"per_image_{ours_name}.csv", index_col=0)
    floor = pd.read_csv(out / "per_image_baseline_test.csv", index_col=0)
    assert sorted(floor.index) == sorted(ours.index)  # the very same images
    assert beside["jaccard"] == pytest.approx(ours["jaccard"].mean(), abs=1e-4)
    assert beside["baseline_jaccard"] == pytest.approx(floor["jaccard"].mean(), abs=1e-4)

    masks = [p for p in out.glob("predictions/*/*_segmentation.png") if p.parent.name != "external"]
    cases = samples / "ph2-sample" / "PH2 Dataset images"
    assert masks
    for mask in masks:  # each at its image's original size (PH2's are about 765x572)
        case = mask.name.removesuffix("_segmentation.png")
        original = cases / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp"
        assert Image.open(mask).size == Image.open(original).size, mask.name
    if "external_dataset" in params:
        external = {r["name"]: r for r in record["results"]}["external"]
        assert external["metrics"]["n_images"] == 41  # every HAM10000 sample image
        assert external["details"]["external"] == "folder"
    assert list((out / "figures").glob("*.png"))
