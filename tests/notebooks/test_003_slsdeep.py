"""Chapter 003 (SLSDeep): its recipe, and its two ablation switches under papermill, at the
smallest sizes.

The default run of the chapter is tested centrally (tests/test_notebooks.py). The recipe tests
check what ``lessons_lib/recipes/slsdeep.py`` declares (ranges, the zoom constraint, the cost
counted from the published splits, the ``--help-notebook`` listing, which row of the paper's
Table 1 each setting of the switches is). One papermill run flips both switches, ``-p epe_weight
0`` (no EPE term) and ``-p skips all`` (every encoder stage reaches the decoder): it must train
that network and loss, record the recipe's optimiser and schedule, write a complete run folder,
and put no paper number beside a setting the paper did not report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, papermill

from lessons_lib.data.layouts import PUBLISHED_SPLITS
from lessons_lib.params import ParameterError
from lessons_lib.recipes import get_recipe, parameters_cell
from lessons_lib.synth import make_dataset

NOTEBOOK = REPO / "notebooks" / "003_slsdeep.ipynb"
RECIPE = get_recipe("003_slsdeep")
# One epoch at 32x32 (encoder maps of 4x4) and one untimed + one timed speed pass of one image.
FAST = {"size": 32, "epochs": 1, "speed_iters": 1, "speed_warmup": 0}
PAPER_PARAMS = 60_226_628  # the paper-text reading (PPN 1024)
ASC_PARAMS = PAPER_PARAMS + 533_568  # plus the four 1x1 skip reductions


# -- the recipe ----------------------------------------------------------------------------------
def test_the_full_profile_is_the_papers_recipe() -> None:
    full = RECIPE.profile("full")
    paper = {p.name: p.paper for p in RECIPE.params}
    for name in ("size", "epochs", "batch_size", "lr_encoder", "lr_decoder", "poly_power"):
        assert getattr(full, name) == paper[name], name
    assert (full.min_zoom, full.max_zoom, full.max_rotate) == (0.5, 1.5, 10.0)
    assert (full.epe_weight, full.skips, full.ppn_width) == (0.5, "one", 1024)
    assert RECIPE.optimizer(full).as_dict() == {
        "class": "Adam",
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "decoupled": False,
        "decay_bn_and_bias": False,
    }
    assert RECIPE.schedule(full).as_dict() == {"policy": "poly", "power": 0.9}


@pytest.mark.parametrize(
    "given, name, words",
    [
        ({"batch_size": 1}, "batch_size", "an int >= 2"),
        ({"size": 36}, "size", "a multiple of 8"),
        ({"skips": "some"}, "skips", "one of 'one', 'all'"),
        ({"ppn_width": 0}, "ppn_width", "an int >= 1"),
        ({"epe_weight": -0.5}, "epe_weight", "a number >= 0"),
        ({"poly_power": -1}, "poly_power", "a number >= 0"),
        ({"min_zoom": 0}, "min_zoom", "a number > 0"),
        ({"max_rotate": 181}, "max_rotate", "a number in [0, 180]"),
        ({"min_zoom": 1.2, "max_zoom": 1.1}, "min_zoom", "min_zoom <= max_zoom"),
    ],
)
def test_a_wrong_parameter_is_named_with_what_it_expects(given: dict, name: str, words: str):
    with pytest.raises(ParameterError) as err:
        RECIPE.resolve("smoke", given)
    assert err.value.name == name and words in str(err.value)


def test_the_ablations_and_a_narrower_pyramid_are_accepted() -> None:
    given = {"epe_weight": 0, "skips": "all", "ppn_width": 512, "min_zoom": 1.0, "max_zoom": 1.0}
    P = RECIPE.resolve("smoke", given)  # noqa: N806
    assert (P.epe_weight, P.skips, P.ppn_width, P.min_zoom, P.max_zoom) == (0.0, "all", 512, 1, 1)
    assert RECIPE.network(P) == (
        "slsdeep",
        dict(n_out=2, pretrained=False, ppn_width=512, skips="all"),
    )


def test_the_cost_is_counted_from_the_published_splits_and_the_speed_claim() -> None:
    full = RECIPE.profile("full")
    timed = full.speed_batch * (full.speed_iters + full.speed_warmup)
    splits = PUBLISHED_SPLITS["isic2017"]
    assert RECIPE.predicted_images(full, splits) == splits["test"] + splits["valid"] + timed
    (stage,) = RECIPE.cost_stages(full, splits)
    assert (stage.size, stage.batch_size, stage.epochs) == (384, 16, 100)
    assert (stage.images, stage.eval_images) == (splits["train"], splits["valid"])
    isic2016 = types.SimpleNamespace(**{**vars(full), "dataset": "isic2016"})
    (stage,) = RECIPE.cost_stages(isic2016, PUBLISHED_SPLITS["isic2016"])
    assert (stage.images, stage.eval_images) == (900, full.n_monitor)  # no validation split
    estimate = RECIPE.estimate_cost("full")
    assert estimate.stages[-1].images_evaluated == 600 + 150 + timed
    assert RECIPE.estimate_cost(isic2016).gpu_hours < estimate.gpu_hours


def test_help_notebook_lists_every_parameter_with_its_meaning() -> None:
    cell = parameters_cell(RECIPE)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert params.source == cell  # the parameters cell is the recipe's
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(NOTEBOOK)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for param in RECIPE.params:
        assert f"  {param.name}: " in out, param.name
        assert param.meaning in out, param.name


# -- the ablations, under papermill ----------------------------------------------------------
def _run(tmp_path: Path, **params) -> tuple[Path, dict]:
    out = tmp_path / "out"
    papermill(NOTEBOOK, tmp_path / "executed.ipynb", {"out_dir": str(out), **FAST, **params})
    return out, json.loads((out / "metrics.json").read_text())


def _check_run_folder(out: Path, record: dict, gflops: float) -> dict:
    """Common checks; returns the results by evaluation name."""
    results = {r["name"]: r for r in record["results"]}
    # the synthetic data has the ISIC 2017 layout; "external" when one was asked for
    assert set(results) - {"external"} == {"test", "valid"}
    for result in (results["test"], results["valid"]):
        metrics = result["metrics"]
        assert metrics["n_images"] == 8
        for key in ("jaccard", "dice", "pooled_jaccard", "pooled_dice", "accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert (out / f"per_image_{result['name']}.csv").is_file()
    assert results["valid"]["reported"] == []  # Table 1 has test rows only
    for figure in ("learning_curves", "lr_schedule", "ja_distribution", "overlays"):
        assert (out / "figures" / f"{figure}.png").is_file(), figure
    assert (out / "models" / "train.pth").is_file()
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + FAST["epochs"]
    assert record["details"]["throughput"]["batch_size"] == 1
    assert record["details"]["gflop_per_image"] == pytest.approx(gflops, rel=0.01)  # at 384
    # what it trained with: the recipe's optimiser, as declared and as read after training
    training = record["details"]["training"]
    assert training["recipe"] == "lessons_lib.recipes.slsdeep.SLSDeepRecipe"
    assert training["optimizer"] == RECIPE.optimizer(RECIPE.profile("smoke")).as_dict()
    assert training["schedule"] == {"policy": "poly", "power": 0.9}
    assert [t["pad_mode"] for t in training["augmentation"]] == ["zeros"]  # one affine map
    encoder, decoder = training["optimizer_used"]["groups"]
    for group in (encoder, decoder):
        assert (group["beta1"], group["beta2"], group["eps"]) == (0.9, 0.999, 1e-8)
        assert group["weight_decay"] == 0.0
    assert decoder["lr"] == pytest.approx(10 * encoder["lr"])  # 0.01 and 0.001, both decayed
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"
    return results


@pytest.mark.parametrize(
    ("epe_weight", "skips", "row"),
    [
        (0.5, "one", "SLSDeep"),
        (0, "one", "SLSDeep-EPE"),  # an int, as -p epe_weight 0 gives it
        (0.5, "all", "SLSDeep+ASC"),
        (0.0, "all", None),  # both ablations at once: not in Table 1
        (0.25, "one", None),
    ],
)
def test_each_setting_of_the_switches_names_its_row_of_table_1(epe_weight, skips, row) -> None:
    P = RECIPE.resolve("smoke", {"epe_weight": epe_weight, "skips": skips})  # noqa: N806
    assert RECIPE.variant(P) == row


@pytest.mark.notebooks
def test_both_ablation_switches_at_once(tmp_path: Path) -> None:
    other = make_dataset(tmp_path / "other", n=4, n_valid=1, n_test=1, size=96, seed=9)
    out, record = _run(
        tmp_path,
        epe_weight=0,
        skips="all",
        external_dataset="synthetic",
        external_data_dir=str(other),
    )
    assert record["params"]["epe_weight"] == 0 and record["params"]["skips"] == "all"
    results = _check_run_folder(out, record, gflops=245.66)  # the ASC network's FLOPs
    name = "SLSDeep (epe_weight=0.0, skips=all)"
    assert record["details"]["variant"] == name and results["test"]["method"] == name
    assert results["test"]["reported"] == []  # the paper has no row for it: none is shown
    external = results["external"]  # the variant's model on another dataset, its method named
    assert external["method"] == name and external["metrics"]["n_images"] == 6
    assert record["n_parameters"] == ASC_PARAMS  # four 1x1 skip reductions more than SLSDeep
    assert record["details"]["training"]["network"]["skips"] == "all"
    loss = record["details"]["training"]["loss"]
    assert (loss["class"], loss["alpha"]) == ("NLLEPELoss", 0.0)  # no EPE term
