"""Chapter 004 (Qi et al., VGG16 FCN): its recipe, and the notebook under papermill with its
switches.

The recipe tests are fast: the paper's optimiser written out, the augmentation off unless asked
for, the cost counted from the published split sizes, the parameter checks. The default run
(concatenation, both fusions compared) is tested for every chapter in
``tests/test_notebooks.py``. Here one run flips every switch: FCN's sum fusion as the chapter's
model (the comparison then trains concatenation), the augmentation and the bilinear
deconvolutions. It is as short as the chapter allows: 32x32 inputs, one epoch of one batch of 6
synthetic images. The network is the full 134 M-parameter one, so each model still takes
seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, papermill

from lessons_lib.data.layouts import PUBLISHED_SPLITS
from lessons_lib.params import ParameterError
from lessons_lib.recipes import get_recipe
from lessons_lib.training.optim import Schedule, SGDSpec

NOTEBOOK = REPO / "notebooks" / "004_vgg16_fcn.ipynb"
SHORT = {"size": 32, "epochs": 1, "n_train": 6, "batch_size": 6}
RECIPE = get_recipe("004_vgg16_fcn")
MATCONVNET_STEPS = ["l2_reg", "average_grad", "momentum_step"]  # L2 in the gradient, momentum


def with_values(profile: str, **values) -> SimpleNamespace:
    """A profile's declared values with some replaced."""
    return SimpleNamespace(**{**vars(RECIPE.profile(profile)), **values})


# -- the recipe ------------------------------------------------------------------------------------
def test_full_profile_is_the_papers_recipe() -> None:
    full = RECIPE.profile("full")
    for name, paper in {
        "size": 384,
        "batch_size": 6,
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "fusion": "concat",
        "deconv_init": "random",
        "augment": False,
        "pretrained": True,
        "dataset": "isic2017",
    }.items():
        assert RECIPE.param(name).paper == paper, name
        assert getattr(full, name) == paper, name
    assert RECIPE.network(full) == (
        "vgg16_fcn",
        dict(n_out=2, pretrained=True, fusion="concat", deconv_init="random"),
    )


def test_optimizer_is_matconvnets_sgd_with_a_constant_rate() -> None:
    for profile in RECIPE.profiles():
        P = RECIPE.profile(profile)  # noqa: N806
        spec = RECIPE.optimizer(P)
        assert spec == SGDSpec(
            momentum=0.9, weight_decay=1e-4, decoupled=False, decay_bn_and_bias=False
        )
        assert RECIPE.schedule(P) == Schedule("constant")
    spec = RECIPE.optimizer(with_values("smoke", momentum=0.5, weight_decay=0.0))
    assert (spec.momentum, spec.weight_decay) == (0.5, 0.0)  # the parameters, not constants
    opt = RECIPE.optimizer(RECIPE.profile("full")).opt_func()(
        [torch.nn.Parameter(torch.zeros(1))], lr=1e-3
    )
    assert [step.__name__ for step in opt.cbs] == MATCONVNET_STEPS


def test_augmentation_only_when_asked_for() -> None:
    assert RECIPE.augmentation(RECIPE.profile("full")) == []  # the paper: none
    assert RECIPE.augmentation(RECIPE.profile("smoke")) == []
    described = RECIPE.describe(with_values("smoke", augment=True))["augmentation"]
    assert [t["class"] for t in described] == ["Dihedral"]  # flips and rotation, one affine
    assert described[0]["pad_mode"] == "reflection"


def test_cost_is_counted_from_the_published_splits() -> None:
    splits = PUBLISHED_SPLITS["isic2017"]
    full = RECIPE.profile("full")
    (stage,) = RECIPE.cost_stages(full, splits)
    assert (stage.size, stage.batch_size, stage.epochs) == (384, 6, 50)
    assert (stage.images, stage.models, stage.eval_images) == (2000, 2, 150)
    assert RECIPE.predicted_images(full, splits) == 2 * (150 + 600)
    one = with_values("full", compare_fusion=False, n_train=100)
    (stage,) = RECIPE.cost_stages(one, splits)
    assert (stage.images, stage.models) == (100, 1)
    assert RECIPE.predicted_images(one, splits) == 150 + 600
    estimate = RECIPE.estimate_cost("full")
    assert estimate.parameters == 134_309_926 and estimate.optimizer == "sgd_momentum"


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"size": 48}, "multiple of 32"),
        ({"fusion": "cat"}, "did you mean 'concat'"),
        ({"deconv_init": "zeros"}, "'random', 'bilinear'"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"n_train": 0}, "n_train"),
    ],
)
def test_wrong_parameters_stop_the_chapter(given: dict, words: str) -> None:
    with pytest.raises(ParameterError, match="parameter") as error:
        RECIPE.resolve("smoke", given)
    assert words in str(error.value)
    assert list(error.value.problems) == list(given)


def test_parameters_cell_is_written_from_the_recipe() -> None:
    from lessons_lib.recipes.__main__ import sync

    assert sync(check=True, chapters=["004_vgg16_fcn"]) == []


# -- the notebook ----------------------------------------------------------------------------------
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
        assert result["reported"] == []  # the paper reports no number: none is invented
        metrics = result["metrics"]
        assert metrics["n_images"] > 0
        for key in ("jaccard", "threshold_jaccard", "pooled_jaccard", "dice", "accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, key
    return results


def check_training(record: dict, augmented: bool) -> None:
    """``metrics.json`` records the optimiser as it was after training: MatConvNet's SGD."""
    training = record["details"]["training"]
    assert training["recipe"] == "lessons_lib.recipes.vgg16_fcn.VGG16FCNRecipe"
    assert training["schedule"] == {"policy": "constant"}
    assert bool(training["augmentation"]) is augmented
    used = training["optimizer_used"]
    assert used["steps"] == MATCONVNET_STEPS and used["decoupled_weight_decay"] is False
    assert len(used["groups"]) == 2  # VGG16's convolutions, the new layers
    for group in used["groups"]:
        assert group["lr"] == pytest.approx(1e-3)
        assert group["momentum"] == pytest.approx(0.9)
        assert group["weight_decay"] == pytest.approx(1e-4)


@pytest.mark.notebooks
def test_every_switch_at_once(tmp_path: Path) -> None:
    out, record = run_chapter(tmp_path, fusion="sum", augment=True, deconv_init="bilinear")
    params = record["params"]
    assert (params["fusion"], params["augment"], params["deconv_init"]) == ("sum", True, "bilinear")
    assert params["size"] == 32 and params["compare_fusion"] is True
    assert record["n_parameters"] == 134_309_900  # no fuse convolution: 26 fewer than concat
    results = check_results(record, {"valid_sum", "test_sum", "valid_concat", "test_concat"})
    # every setting that is not the paper's is in the name; concatenation is the paper's fusion
    method = "004_vgg16_fcn (fusion=sum, augment, deconv_init=bilinear)"
    assert results["test_sum"]["method"] == method
    assert results["test_concat"]["method"] == "004_vgg16_fcn (augment, deconv_init=bilinear)"
    assert record["details"]["fusions_trained"] == ["sum", "concat"]
    network = record["details"]["training"]["network"]
    assert (network["fusion"], network["deconv_init"]) == ("sum", "bilinear")
    check_training(record, augmented=True)
    assert (out / "history.csv").is_file() and (out / "models" / "train.pth").is_file()
    assert (out / "fusion_concat" / "models" / "train.pth").is_file()
    for name in results:
        assert (out / f"per_image_{name}.csv").is_file()
        saved = list((out / "predictions" / name).glob("*_segmentation.png"))
        assert len(saved) == results[name]["metrics"]["n_images"], name
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    expected = {"learning_curves", "ja_distribution", "fusion_pair", "overlays", "worst_cases"}
    assert expected <= figures
