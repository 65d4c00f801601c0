"""Each paper's recipe: declared once, complete, and what the chapter, the cost estimate and
``metrics.json`` read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lessons_lib.cost import A100_40GB, T4
from lessons_lib.errors import DataError
from lessons_lib.params import NOT_GIVEN, PROFILES, ParameterError
from lessons_lib.recipes import CHAPTERS, OTHER_CHAPTERS, get_recipe, recipes
from lessons_lib.source import source_of
from lessons_lib.training.optim import AdamSpec, Schedule, SGDSpec

IDS = list(CHAPTERS)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_paper_chapter_has_one_recipe_named_after_it() -> None:
    """The registry names every chapter notebook (so the tests parametrised by it are not
    empty), and each recipe is the one of its chapter."""
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem != "leaderboard")
    assert sorted([*CHAPTERS, *OTHER_CHAPTERS]) == notebooks
    assert IDS and [p for p in notebooks if p[:3].isdigit()] == IDS
    assert [r.chapter for r in recipes()] == IDS
    with pytest.raises(KeyError, match="valid: 000_lesionseg"):
        get_recipe("005_nope")


@pytest.mark.parametrize("chapter", IDS)
def test_the_recipe_declares_every_value(chapter: str) -> None:
    recipe = get_recipe(chapter)
    assert recipe.title and recipe.profiles() == list(PROFILES)
    names = [p.name for p in recipe.params]
    assert len(names) == len(set(names)), "a parameter declared twice"
    assert "workers" not in names and {"prepare_workers", "loader_workers"} <= set(names)
    for profile in PROFILES:
        P = recipe.profile(profile)  # noqa: N806
        optimizer = recipe.optimizer(P)
        assert isinstance(optimizer, AdamSpec | SGDSpec)
        assert None not in dataclasses.asdict(optimizer).values(), "a value left to a default"
        assert isinstance(recipe.schedule(P), Schedule)
        described = recipe.describe(P)
        json.dumps(described)  # metrics.json can hold it
        assert described["optimizer"]["class"] in ("Adam", "SGD")


@pytest.mark.parametrize("chapter", IDS)
def test_the_table_shows_meaning_paper_and_profiles(chapter: str) -> None:
    recipe = get_recipe(chapter)
    table = recipe.table(recipe.profile("smoke"))
    assert list(table.columns[:3]) == ["meaning", "paper", "smoke"]
    assert {"full", "this run"} <= set(table.columns)
    assert (table["paper"] == "not given").any() or all(
        p.paper is not NOT_GIVEN for p in recipe.params
    )
    assert "seed" not in table.index  # bookkeeping stays out of the recipe table


@pytest.mark.parametrize("chapter", IDS)
def test_the_cost_estimate_is_computed_from_the_recipe(chapter: str) -> None:
    recipe = get_recipe(chapter)
    estimate = recipe.estimate_cost("full")
    assert estimate.gpu_hours > 0 and estimate.peak_memory_gb > 0
    optimizer = recipe.optimizer(recipe.profile("full"))
    assert estimate.optimizer == {2: "adam", 1: "sgd_momentum", 0: "sgd"}[optimizer.state_values]


@pytest.mark.parametrize("chapter", IDS)
def test_the_parts_a_student_reads_have_source(chapter: str) -> None:
    recipe = get_recipe(chapter)
    parts = recipe.source()
    assert {p.__name__ for p in parts} >= {"network", "optimizer", "schedule"}
    for part in parts:
        assert "def " in source_of(part)


@pytest.mark.parametrize("chapter", IDS)
def test_the_loss_is_the_recipes_and_the_chapter_takes_it(chapter: str) -> None:
    """The recipe declares the loss (its settings from the parameters); the chapter trains with
    ``R.loss(P)`` and builds no loss of its own (one declaration: the benchmarks and the GPU
    check take the same)."""
    from torch import nn

    recipe = get_recipe(chapter)
    for profile in PROFILES:
        assert isinstance(recipe.loss(recipe.profile(profile)), nn.Module)
    code = "\n".join(
        "".join(c["source"])
        for c in json.loads((NOTEBOOKS / f"{chapter}.ipynb").read_text())["cells"]
        if c["cell_type"] == "code"
    )
    assert "R.loss(P)" in code
    for name in ("CrossEntropy2d(", "JaccardDistance(", "BCEWithLogits2d(", "NLLEPELoss("):
        assert name not in code, f"{chapter} builds {name}...) itself"


def test_chapter_001_trains_with_the_papers_lasagne_adam() -> None:
    recipe = get_recipe("001_cdnn29")
    for profile in ("smoke", "full"):
        assert recipe.optimizer(recipe.profile(profile)) == AdamSpec(
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            decoupled=False,
            decay_bn_and_bias=False,
        )


def test_a_dry_run_caps_epochs_and_takes_the_recipes_settings(tmp_path) -> None:
    recipe = get_recipe("002_resnet34_unet")
    given = {"dry_run": True, "data_dir": str(tmp_path), "pretrained": False}
    P = recipe.resolve("full", given)  # noqa: N806
    assert P.epochs == (1, 1) and P.epochs_frozen == (1, 1)
    assert P.n_valid == 1 and P.dry_run_images == 2 * 16  # two batches of the largest size
    assert recipe.resolve("full", {**given, "n_valid": 3}).n_valid == 3  # the user's value wins


def test_constraints_across_parameters_are_checked() -> None:
    with pytest.raises(ParameterError, match="min_zoom"):
        get_recipe("003_slsdeep").resolve("smoke", {"min_zoom": 1.2, "max_zoom": 1.1})


def test_chapter_002_predicts_the_test_split_too_where_there_is_one() -> None:
    """The random split, the official validation set and, where the dataset has one, the test
    set: what the cost estimate counts as predicted once after training."""
    R = get_recipe("002_resnet34_unet")  # noqa: N806
    full = R.profile("full")
    splits = R.splits(full)
    assert R.predicted_images(full, splits) == full.n_valid + 100 + 1000  # ISIC 2018
    assert R.predicted_images(full, {"train": 50, "valid": 10}) == full.n_valid + 10


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_an_external_validation_needs_a_dataset_and_its_folder(chapter: str, tmp_path) -> None:
    from lessons_lib.errors import DataError

    R = get_recipe(chapter)  # noqa: N806
    assert R.resolve("smoke", {}).external_dataset is None  # none unless asked for
    with pytest.raises(ParameterError, match="parameter external_data_dir: expected with"):
        R.resolve("smoke", {"external_dataset": "ph2"})
    with pytest.raises(ParameterError, match="parameter external_dataset: expected with"):
        R.resolve("smoke", {"external_data_dir": str(tmp_path)})
    with pytest.raises(ParameterError, match="parameter external_dataset"):
        R.resolve("smoke", {"external_dataset": "ph3", "external_data_dir": str(tmp_path)})
    with pytest.raises(DataError, match="external_data_dir does not exist"):
        R.resolve("smoke", {"external_dataset": "ph2", "external_data_dir": str(tmp_path / "x")})
    P = R.resolve("smoke", {"external_dataset": "ph2", "external_data_dir": str(tmp_path)})  # noqa: N806
    assert (P.external_dataset, P.external_data_dir) == ("ph2", str(tmp_path))


@pytest.mark.parametrize("chapter", IDS)
def test_the_colab_profile_trains_on_the_papers_data_within_an_hour_on_a_t4(chapter: str) -> None:
    """By the recipe's own cost estimate for Colab's free GPU, whose card it names; the
    network, loss and post-processing are the full profile's, only the length may differ."""
    recipe = get_recipe(chapter)
    colab, full = recipe.profile("colab"), recipe.profile("full")
    assert colab.dataset == full.dataset == recipe.param("dataset").paper
    estimate = recipe.estimate_cost("colab")
    assert estimate.gpu == T4 and recipe.estimate_cost("full").gpu == A100_40GB
    total = estimate.as_dict()["total"]
    assert total["gpu_hours"] <= 1.0 and total["fits"], total
    sized = {"epochs", "loader_workers"}  # what the colab profile may shorten
    differ = {p.name for p in recipe.params if p.value("colab") != p.value("full")}
    assert differ <= sized, differ
    assert recipe.network(colab) == recipe.network(full)


@pytest.mark.parametrize("chapter", IDS)
def test_the_laptop_profile_is_real_lesions_on_a_cpu(chapter: str, tmp_path) -> None:
    """PH2 by default (a folder the user downloads: the error says how), ImageNet weights where
    the paper starts from them, no DataLoader processes beside the training one."""
    recipe = get_recipe(chapter)
    laptop = recipe.profile("laptop")
    assert laptop.dataset == "ph2" and laptop.data_dir is None and laptop.loader_workers is None
    assert recipe.network(laptop)[0] == recipe.network(recipe.profile("full"))[0]
    if recipe.weights is not None:
        assert laptop.pretrained is True
    given = {"pretrained": False} if recipe.weights is not None else {}
    with pytest.raises(DataError, match="needs data_dir") as err:
        recipe.resolve("laptop", given)
    assert "python -m lessons_lib data download ph2 --accept-terms" in str(err.value)
    P = recipe.resolve("laptop", {**given, "data_dir": str(tmp_path)})  # noqa: N806
    assert P.profile == "laptop" and P.dataset == "ph2"


def test_pretrained_true_must_get_its_weights_outside_the_smoke_profile(
    tmp_path, monkeypatch
) -> None:
    """A laptop (or Colab, or full) run never trains a "pretrained" network from scratch: with
    no cached weights and no server, ``pretrained=True`` stops the first cell; the smoke
    profile falls back to random weights and says so in ``weights_source``."""
    import lessons_lib.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "cached_weights", lambda arch: tmp_path / f"{arch}.pth")
    monkeypatch.setattr(pretrained, "download_problem", lambda url, timeout: "offline")
    recipe = get_recipe("002_resnet34_unet")
    for profile in ("laptop", "colab", "full"):
        with pytest.raises(ParameterError, match="pretrained=True.*offline"):
            recipe.resolve(profile, {"data_dir": str(tmp_path), "pretrained": True})
    recipe.resolve("smoke", {"pretrained": True})
