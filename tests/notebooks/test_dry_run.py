"""Every chapter's full or colab profile as a dry run (``-p dry_run True``), on data in the
publishers' layouts at realistic resolution.

The colab profile is the full one with fewer epochs (and two DataLoader processes, Colab's
cores): ``tests/test_recipes.py`` checks that nothing else differs. A dry run caps every stage at
one epoch, so the two profiles' dry runs are the same code path with the same values; each
chapter runs one of them (chapters 000, 002 and 004 the colab profile, 001 and 003 the full
one), so that both are run and the suite does not run the same thing twice.

The dataset is made by the synthetic generator (ISIC 2017 layout, small images: the code path is
the same at any size), with the first image of the validation split enlarged to 4000x3000 as
ISIC's camera images are (preparation and evaluation at the original size are what that shows:
the same code for every split, see :data:`CAMERA_SPLIT`); the ISIC 2018
layout (chapter 002) holds the same files under that challenge's folder names. Each chapter
runs its profile - full input sizes, preparation at full size, every stage, fold and
model, evaluation at original size, post-processing, figures, ``metrics.json`` - with one epoch
per stage and a few images per split, the batch size lowered so the set stays within minutes
on two cores. Chapter 002 alone also trains at lower input sizes (its two stages' progressive
resizing kept): its 1024 px stage is a GPU's work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, papermill
from PIL import Image

from lessons_lib.synth import make_dataset

pytestmark = pytest.mark.notebooks

N = 6  # images per split: the largest dry runs here (chapters 000 and 001) use six
SMALL = 160  # the other images' width: each chapter's network input is larger (upsampled)
BIG = (4000, 3000)
CAMERA_SPLIT = "Validation"
"""The split holding the one camera-size image: every chapter evaluates its validation split at
the original size (both layouts have one), and preparing a camera image, predicting it and
scoring it at its size are the same code in every split; each further camera image would add
seconds of decoding, resizing and morphology at 12 megapixels to every evaluation."""
ISIC2017 = {
    "Training": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
    "Validation": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
    "Test_v2": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
}
ISIC2018 = {
    "Training": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
    "Validation": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
}
# Per chapter: dataset, parameters lowering the batch size (and what a CPU cannot fetch), and
# the images per split its dry run uses.
CHAPTERS = {
    "000_lesionseg": ("isic2017", {"batch_size": 2}, 6),
    "001_cdnn29": ("isic2017", {"batch_size": 2}, 6),
    "002_resnet34_unet": (
        "isic2018",
        # the LR finder only draws a figure (the paper's rates are used): skipped here. The
        # network input of both stages is lowered too (512 and 1024 px would take 3 minutes and
        # 5 GiB on two cores for the same code path); everything else stays at full size.
        {"batch_size": "[1, 1]", "pretrained": False, "lr_find_iters": 0, "sizes": "[128, 256]"},
        2,
    ),
    "003_slsdeep": ("isic2017", {"batch_size": 2, "speed_batch": 1, "pretrained": False}, 4),
    "004_vgg16_fcn": ("isic2017", {"batch_size": 1, "pretrained": False}, 2),
}


REPORTED = {
    "000_lesionseg": {"valid": ["jaccard"]},
    "001_cdnn29": {
        e: ["accuracy", "dice", "jaccard", "sensitivity", "specificity"]
        for e in ("test_ensemble", "valid_ensemble")
    },
    "002_resnet34_unet": {"random_split": ["jaccard"], "official_valid": ["threshold_jaccard"]},
    "003_slsdeep": {"test": ["accuracy", "dice", "jaccard", "sensitivity", "specificity"]},
    "004_vgg16_fcn": {},
}
"""Per chapter: the evaluations that carry the paper's numbers on the paper's dataset (its
recipe's ``reported``), and which metrics."""

PROFILES = {
    "000_lesionseg": "colab",
    "001_cdnn29": "full",
    "002_resnet34_unet": "colab",
    "003_slsdeep": "full",
    "004_vgg16_fcn": "colab",
}


@pytest.fixture(scope="module")
def publisher_data(tmp_path_factory) -> dict[str, Path]:
    """``{"isic2017": root, "isic2018": root}``: the same images in both layouts."""
    base = tmp_path_factory.mktemp("publisher")
    root17 = make_dataset(base / "isic2017", n=N, n_valid=N, n_test=N, size=SMALL, seed=3)
    images, masks = ISIC2017[CAMERA_SPLIT]  # ISIC's camera resolution for one image
    first = sorted((root17 / images).glob("ISIC_*[0-9].jpg"))[0]
    mask = root17 / masks / f"{first.stem}_segmentation.png"
    Image.open(first).resize(BIG, Image.BICUBIC).save(first, quality=95)
    Image.open(mask).resize(BIG, Image.NEAREST).save(mask)
    root18 = base / "isic2018"
    for split, (images, masks) in ISIC2018.items():
        source_images, source_masks = ISIC2017[split]
        (root18 / images).mkdir(parents=True)
        (root18 / masks).mkdir(parents=True)
        for image in sorted((root17 / source_images).glob("ISIC_*[0-9].jpg")):
            shutil.copy(image, root18 / images / image.name)
            mask = f"{image.stem}_segmentation.png"
            shutil.copy(root17 / source_masks / mask, root18 / masks / mask)
    return {"isic2017": root17, "isic2018": root18}


# the longest (002, at 512 and 1024 px) first: sent last, it would end the session alone
@pytest.mark.parametrize("stem", sorted(CHAPTERS, key=lambda s: s != "002_resnet34_unet"))
def test_profile_dry_run(stem: str, publisher_data, tmp_path: Path) -> None:
    dataset, lowered, images = CHAPTERS[stem]
    profile = PROFILES[stem]
    out = tmp_path / "run"
    params = {
        "profile": profile,
        "dry_run": True,
        "dataset": dataset,
        "data_dir": str(publisher_data[dataset]),
        "prepare_workers": 1,
        "out_dir": str(out),
        **lowered,
    }
    papermill(REPO / "notebooks" / f"{stem}.ipynb", tmp_path / "executed.ipynb", params)

    record = json.loads((out / "metrics.json").read_text())
    assert record["profile"] == profile and record["dataset"] == dataset
    assert record["params"]["dry_run"] is True and record["params"]["dry_run_images"] == images
    assert record["results"], "no evaluation recorded"
    training = record["details"]["training"]  # what ran: optimiser as read after training
    assert training["optimizer"]["class"] in ("Adam", "SGD") and training["schedule"]["policy"]
    assert training["optimizer_used"]["groups"][0]["lr"] > 0
    costs = record["details"]["cost_estimates"]  # the computed estimates of the GPU profiles
    assert set(costs) == {"full", "colab"} and costs["colab"]["gpu"]["name"].startswith("NVIDIA T4")
    for cost in costs.values():
        assert cost["total"]["gpu_hours"] > 0 and cost["total"]["peak_memory_gb"] > 0
    for result in record["results"]:
        assert 1 <= result["metrics"]["n_images"] <= images, result["name"]
    # on the paper's dataset the paper's numbers stand beside ours, each saying how it was
    # computed (no other dataset gets them: the chapters' smoke tests)
    reported = {
        r["name"]: [x["metric"] for x in r["reported"]] for r in record["results"] if r["reported"]
    }
    assert reported == REPORTED[stem]
    for result in record["results"]:
        for number in result["reported"]:
            assert number["dataset"] == dataset and number["averaging"] and number["source"]
    if stem == "001_cdnn29":  # the paper's timing claims, beside this run's on its hardware
        claims = record["details"]["timing_claims"]
        assert list(claims["paper (its GPU)"].values()) == [60.0, 0.2]
        ours = claims[f"this run (full profile, CPU, {record['environment']['cpu_count']} threads)"]
        assert len(ours) == 2 and all(seconds > 0 for seconds in ours.values())
    history = pd.read_csv(out / "history.csv") if (out / "history.csv").is_file() else None
    histories = [history] if history is not None else []
    histories += [pd.read_csv(p) for p in out.glob("*/history.csv")]
    assert histories, "no training history"
    for frame in histories:  # one epoch per stage
        assert (frame.groupby("stage")["epoch"].max() == 0).all()
    predicted = sorted(out.glob("predictions/*/*_segmentation.png"))
    assert predicted, "no predicted masks written"
    sizes = {Image.open(p).size for p in predicted}
    assert BIG in sizes  # evaluated at the original (camera) size
    assert list((out / "figures").glob("*.png"))
