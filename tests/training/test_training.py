"""lessons_lib.training, evaluate, chapter and viz: the shared training path, end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ADAM, SYNTH, SYNTH_COUNTS, SYNTH_PREPARE_SIZE, SYNTH_SEED

from lessons_lib import chapter
from lessons_lib.data import split_pairs
from lessons_lib.errors import DataError
from lessons_lib.evaluation import evaluate, to_size
from lessons_lib.losses import BCEWithLogits2d, CrossEntropy2d, foreground
from lessons_lib.models import build_model, count_parameters
from lessons_lib.params import Param, resolve
from lessons_lib.record import SCHEMA_VERSION, Result, RunRecord
from lessons_lib.reported import ORIGINAL, Reported
from lessons_lib.training import (
    FreeGradients,
    HistoryCSV,
    PooledScore,
    fit_stage,
    lr_find,
    make_learner,
    segmentation_dls,
)
from lessons_lib.training.optim import SGDSpec


@pytest.fixture(scope="module")
def tiny(synthetic_data, tmp_path_factory):
    """The shared synthetic dataset, prepared, and a trained 1-epoch U-Net on it."""
    chapter.setup(0)
    root, data = synthetic_data
    train, valid = split_pairs(data.pairs("train"), 2, seed=0)
    dls = segmentation_dls(train, valid, 32, 4)
    model = build_model("resnet34_unet", img_size=(32, 32))
    out = tmp_path_factory.mktemp("run")
    learn = make_learner(dls, model, BCEWithLogits2d(), out, ADAM)
    fit_stage(learn, "s32", 1, [1e-4, 1e-3, 1e-3], freeze=False)
    return root, data, train, valid, learn, out


def test_get_data_generates_and_prepares(tiny) -> None:
    # the shared fixture is chapter.get_data's own generated-then-prepared synthetic data
    root, data, train, valid, *_ = tiny
    assert (root / "synth.json").is_file()
    n_train, n_valid = SYNTH_COUNTS["train"], SYNTH_COUNTS["valid"]
    assert len(data.entries("train")) == n_train and len(data.entries("valid")) == n_valid
    assert len(train) == n_train - 2 and len(valid) == 2  # the module's 2-image random split


def test_same_synthetic_data_however_it_is_asked_for(tiny, monkeypatch) -> None:
    root, data, *_ = tiny
    monkeypatch.setenv("LESSONS_CACHE", str(root.parents[1]))  # <cache>/synthetic/<settings>
    synth = {**SYNTH, "n_valid": SYNTH_COUNTS["valid"], "n_test": None}
    again, prepared = chapter.get_data(
        "synthetic", None, SYNTH_PREPARE_SIZE, synth=synth, seed=SYNTH_SEED
    )
    assert again == root and prepared.identity == data.identity == f"synthetic:{root.name}"


def test_get_data_needs_data_dir_for_real_datasets() -> None:
    with pytest.raises(DataError, match="needs data_dir"):
        chapter.get_data("isic2018", None, 64)


def test_dls_batches_are_images_and_binary_masks(tiny) -> None:
    _, _, train, valid, *_ = tiny
    xb, yb = segmentation_dls(train, valid, (24, 32), 2).one_batch()
    assert xb.shape == (2, 3, 24, 32) and yb.shape == (2, 24, 32)
    assert set(torch.unique(yb).tolist()) <= {0, 1}
    with pytest.raises(DataError, match="empty split"):
        segmentation_dls(train, [], 32, 2)
    # fastai would say only "This DataLoader does not contain any batches", once training
    with pytest.raises(DataError) as err:
        segmentation_dls(train[:3], valid, 32, 4)
    assert "training split has 3 image(s) (validation: 2), fewer than one batch of 4" in str(err)
    assert "-p batch_size 3" in str(err.value)
    assert len(segmentation_dls(train[:3], valid, 32, 3).train) == 1  # one full batch: fine


def test_fit_stage_writes_history_and_best_checkpoint(tiny) -> None:
    *_, learn, out = tiny
    history = pd.read_csv(out / "history.csv")
    assert list(history["stage"]) == ["s32"]
    assert {"train_loss", "valid_loss", "pooled_dice", "pooled_jaccard", "lr"} <= set(history)
    assert (out / "models" / "s32.pth").is_file()
    assert not list((out / "models").glob(".*"))  # no temporary files left behind
    assert fit_stage(learn, "skip", 0, 1e-3).empty
    last = fit_stage(learn, "last", 1, 1e-4, schedule="constant", monitor=None)
    assert list(last["epoch"]) == [0] and (out / "models" / "last.pth").is_file()
    saved = torch.load(out / "models" / "last.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in learn.model.state_dict().items())
    with pytest.raises(ValueError, match="unknown schedule"):
        fit_stage(learn, "x", 1, 1e-3, schedule="cosine")


def test_a_stage_frees_gradients_and_a_last_stage_its_optimiser_state(tiny) -> None:
    """After a stage no parameter keeps a gradient; after a last stage the optimiser keeps no
    tensor (Adam's moments) but its hyper-parameters (what metrics.json records)."""
    *_, learn, _ = tiny

    def state_tensors() -> int:
        states = learn.opt.state.values()
        return sum(isinstance(v, torch.Tensor) for state in states for v in state.values())

    fit_stage(learn, "kept", 1, 1e-4, schedule="constant", monitor=None)
    assert all(p.grad is None for p in learn.model.parameters())
    assert state_tensors() > 0  # another stage may follow: Adam's moments are kept
    fit_stage(learn, "final", 1, 1e-4, schedule="constant", monitor=None, last_stage=True)
    assert state_tensors() == 0
    assert learn.opt.hypers[0]["lr"] == pytest.approx(1e-4)
    # a rerun in the same folder loads the finished stage, optimiser state included: freed too
    fit_stage(learn, "kept", 1, 1e-4, schedule="constant", monitor=None)
    assert state_tensors() > 0
    fit_stage(learn, "final", 1, 1e-4, schedule="constant", monitor=None, last_stage=True)
    assert state_tensors() == 0


def test_freeing_gradients_after_each_step_changes_no_weight(tiny, tmp_path: Path) -> None:
    """FreeGradients (on every learner) trains to the same bits as fastai's in-place zeroing,
    and leaves no gradient behind a step; SGD with momentum and weight decay, as chapter 004."""
    _, _, train, valid, *_ = tiny
    sgd = SGDSpec(momentum=0.9, weight_decay=5e-4, decoupled=False, decay_bn_and_bias=True)
    weights, grads_after = [], []
    for free in (True, False):
        chapter.setup(0)
        dls = segmentation_dls(train, valid, 32, 2, seed=0)
        model = build_model("resnet34_unet", img_size=(32, 32))
        learn = make_learner(dls, model, BCEWithLogits2d(), tmp_path / str(free), sgd)
        if not free:
            learn.remove_cb(FreeGradients)  # fastai's own: gradients zeroed in place
        learn.fit(1, 1e-2)
        weights.append({k: v.clone() for k, v in learn.model.state_dict().items()})
        grads_after.append([p.grad for p in learn.model.parameters() if p.requires_grad])
    assert all(g is None for g in grads_after[0])
    assert all(g is not None for g in grads_after[1])  # the callback is what frees them
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_lr_find_suggests_a_rate_or_says_why_not(tiny, capsys) -> None:
    """fastai's range test restores the model; too few iterations left to suggest from give
    ``None`` and a reason (``Learner.lr_find`` itself fails with an IndexError)."""
    *_, learn, _ = tiny
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    suggestion = lr_find(learn, 12)
    assert suggestion is not None and 1e-7 <= suggestion <= 10
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    assert lr_find(learn, 5) is None  # fastai drops the last 5 iterations: none is left
    assert "too few points for a suggestion" in capsys.readouterr().out


def test_evaluate_scores_at_original_size(tiny, tmp_path: Path) -> None:
    _, data, *_, learn, _ = tiny
    per_image, summary, small = evaluate(learn, data, "valid", save_dir=tmp_path)
    assert list(per_image.index) == [e["id"] for e in data.entries("valid")]
    assert summary["n_images"] == SYNTH_COUNTS["valid"] and 0 <= summary["jaccard"] <= 1
    from PIL import Image

    for e in data.entries("valid"):
        saved = Image.open(tmp_path / f"{e['id']}_segmentation.png")
        assert list(saved.size) == e["orig_size"]  # written at the original size
    from lessons_lib.metrics import score_dirs

    truth = Path(data.entries("valid")[0]["orig_mask"]).parent
    rescored = score_dirs(truth, tmp_path)
    assert list(per_image.columns) == [*rescored.columns, "tp", "fp", "tn", "fn"]
    scores = per_image[rescored.columns]  # and each image's confusion counts, for pooled CIs
    pd.testing.assert_frame_equal(rescored, scores, check_names=False, atol=1e-12)


def test_to_size_and_foreground() -> None:
    prob = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    big = to_size(prob, (4, 4), "nearest")
    assert big.shape == (4, 4) and big[0, 2] == 1 and big[0, 0] == 0
    assert to_size(prob, (3, 5), "bicubic").shape == (5, 3)
    with pytest.raises(ValueError, match="unknown resize mode"):
        to_size(prob, (4, 4), "area")
    two = torch.stack([1 - torch.rand(2, 4, 4), torch.rand(2, 4, 4)], 1)
    assert torch.equal(foreground(two), two[:, 1])


def test_pooled_score_counts_over_the_whole_set() -> None:
    class FakeLearn:
        loss_func = CrossEntropy2d()
        to_detach = staticmethod(lambda b, cpu=True, gather=True: b)

    metric = PooledScore("jaccard")
    metric.reset()
    for pred, targ in [([[1, 1], [0, 0]], [[1, 0], [0, 0]]), ([[0, 0], [0, 0]], [[0, 0], [0, 1]])]:
        logits = torch.tensor(pred, dtype=torch.float32)[None, None] * 10 - 5
        learn = FakeLearn()
        learn.pred = torch.cat([-logits, logits], 1)
        learn.y = torch.tensor(targ)[None]
        metric.accumulate(learn)
    assert metric.value == pytest.approx(1 / 3)  # intersection 1, union 3
    assert metric.name == "pooled_jaccard"


def _accumulate(loss_func, outputs: list[torch.Tensor], targets: list) -> PooledScore:
    """A PooledScore("jaccard") after the batches ``(outputs[i], targets[i])``."""

    class FakeLearn:
        to_detach = staticmethod(lambda b, cpu=True, gather=True: b)

    metric = PooledScore("jaccard")
    metric.reset()
    for output, targ in zip(outputs, targets, strict=True):
        learn = FakeLearn()
        learn.loss_func, learn.pred, learn.y = loss_func, output, torch.tensor(targ)[None]
        metric.accumulate(learn)
    return metric


def test_pooled_score_uses_the_losses_activation() -> None:
    preds = [[[1, 1], [0, 0]], [[0, 0], [0, 0]]]
    targets = [[[1, 0], [0, 0]], [[0, 0], [0, 1]]]
    logits = [torch.tensor(p, dtype=torch.float32)[None, None] * 10 - 5 for p in preds]
    sigmoid = _accumulate(BCEWithLogits2d(), logits, targets)
    softmax = _accumulate(CrossEntropy2d(), [torch.cat([-x, x], 1) for x in logits], targets)
    assert sigmoid.value == softmax.value == pytest.approx(1 / 3)
    dice = PooledScore("dice")
    assert dice.name == "pooled_dice"
    with pytest.raises(ValueError, match="unknown kind"):
        PooledScore("accuracy")
    # a 2-channel output is not read through a sigmoid loss's activation
    with pytest.raises(ValueError, match="sigmoid output has 1 channel, got 2"):
        _accumulate(BCEWithLogits2d(), [torch.cat([-x, x], 1) for x in logits], targets)


def test_pooled_score_refuses_a_loss_without_activation() -> None:
    logits = [torch.zeros(1, 1, 2, 2)]
    with pytest.raises(TypeError, match="BCEWithLogitsLoss declares no output activation"):
        _accumulate(torch.nn.BCEWithLogitsLoss(), logits, [[[0, 1], [1, 0]]])


def test_learner_exposes_its_history(tiny) -> None:
    *_, learn, out = tiny
    assert isinstance(learn.history_csv, HistoryCSV)
    assert learn.history_csv.path == out / "history.csv"
    assert {r["stage"] for r in learn.history_csv.rows} >= {"s32"}


def test_resnet34_unet_shapes_and_groups() -> None:
    model = build_model("resnet34_unet", img_size=(64, 64))
    assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    assert len(model.splitter(model)) == 3
    assert count_parameters(model) > 1_000_000  # the paper: "exceeded 1 million"
    with pytest.raises(KeyError, match="valid names: .*resnet34_unet"):
        build_model("resnet35_unet")


def test_resnet34_unet_offline_falls_back_with_a_warning(monkeypatch) -> None:
    from torchvision.models import ResNet34_Weights

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(ResNet34_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.warns(UserWarning, match="trained from scratch"):
        model = build_model("resnet34_unet", img_size=(32, 32), pretrained=True)
    assert model.weights_source.startswith("random initialisation")
    assert "could not be downloaded" in model.weights_source


def test_resnet34_unet_loads_a_local_weights_file(tmp_path: Path) -> None:
    from torchvision.models import resnet34

    reference = resnet34()
    torch.save(reference.state_dict(), tmp_path / "r34.pth")
    model = build_model("resnet34_unet", img_size=(32, 32), pretrained=tmp_path / "r34.pth")
    assert torch.equal(model[0][0].weight, reference.conv1.weight)
    assert str(tmp_path / "r34.pth") in model.weights_source


def test_resolve_takes_the_profile_and_the_overrides() -> None:
    declared = [
        Param(
            "size", "int", "side", {"smoke": 64, "laptop": 512, "colab": 512, "full": 512}, low=1
        ),
        Param(
            "epochs",
            "int",
            "epochs",
            {"smoke": 1, "laptop": 10, "colab": 10, "full": 10},
            low=1,
            role="epochs",
        ),
        Param("seed", "int", "seed", {"smoke": 0, "laptop": 0, "colab": 0, "full": 0}, low=0),
    ]
    p = resolve(declared, "full", {"epochs": 3, "size": None, "seed": 7})
    assert (p.profile, p.size, p.epochs, p.seed) == ("full", 512, 3, 7)
    with pytest.raises(ValueError, match="valid profiles: smoke, laptop, colab, full"):
        resolve(declared, "huge", {})


def test_run_writes_metrics_json_atomically(tmp_path: Path) -> None:
    params = {"dataset": "synthetic", "profile": "smoke", "seed": 0}
    run = chapter.Run(tmp_path, "002_resnet34_unet", "A paper", params, chapter.environment())
    assert json.loads((tmp_path / "params.json").read_text()) == {
        "chapter": "002_resnet34_unet",
        **params,
    }
    per_image = pd.DataFrame({"jaccard": [0.5]}, index=pd.Index(["a"], name="image_id"))
    summary = {"jaccard": 0.5, "n_images": 1}
    paper = [Reported("jaccard", 0.7, "per_image", ORIGINAL, "synthetic", "valid", "Table 1")]
    result = run.add_result("valid", "the valid split", per_image, summary, paper)
    assert isinstance(result, Result) and run.results == [result]
    assert (result.name, result.evaluated_on, result.metrics, result.reported, result.method) == (
        "valid",
        "the valid split",
        summary,
        paper,
        None,
    )
    isic = [Reported("jaccard", 0.7, "per_image", ORIGINAL, "isic2017", "valid", "Table 1")]
    with pytest.raises(ValueError, match="numbers for isic2017 cannot stand beside a run on synth"):
        run.add_result("valid", "the valid split", per_image, summary, isic)
    run.add_result("otsu", "the valid split", per_image, summary, method="otsu", k=3)
    run.lap("step")
    path = run.finish("synthetic:abc", n_parameters=42, weights_source="scratch", flops=7)
    assert path == tmp_path / "metrics.json"
    assert json.loads(path.read_text())["schema"] == SCHEMA_VERSION
    record = RunRecord.read(path)
    assert (record.chapter, record.paper, record.dataset, record.profile) == (
        "002_resnet34_unet",
        "A paper",
        "synthetic",
        "smoke",
    )
    assert record.results == run.results
    assert record.results[1].method == "otsu" and record.results[1].details == {"k": 3}
    assert record.data_identity == "synthetic:abc"
    assert (record.n_parameters, record.weights_source) == (42, "scratch")
    assert record.details == {"flops": 7}
    assert record.params == params and "step" in record.timings_s
    assert {"torch", "fastai", "device", "git_revision"} <= set(record.environment)
    assert record.wall_time_s >= 0 and record.finished
    assert (tmp_path / "per_image_valid.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_run_replaces_a_result_of_the_same_name(tmp_path: Path) -> None:
    params = {"dataset": "synthetic", "profile": "smoke"}
    run = chapter.Run(tmp_path, "001_cdnn29", "p", params, {})
    frame = pd.DataFrame({"jaccard": [0.5]}, index=["a"])
    run.add_result("valid", "v", frame, {"jaccard": 0.5})
    paper = Reported("jaccard", 0.76, "per_image", ORIGINAL, "synthetic", "test", "Table 3")
    run.add_result("test", "t", frame, {"jaccard": 0.6}, [paper])
    run.add_result("valid", "v", frame, {"jaccard": 0.55})
    assert [(r.name, r.metrics["jaccard"]) for r in run.results] == [
        ("test", 0.6),
        ("valid", 0.55),
    ]
    # default comparison: the evaluations with reported numbers
    table = run.comparison()
    assert list(table.columns) == [("test", "ours"), ("test", "paper")]
    assert table.loc["jaccard", ("test", "ours")] == 0.6
    assert table.loc["jaccard", ("test", "paper")] == 0.76
    assert table.loc["dice", ("test", "paper")] == ""
    assert list(run.comparison(["valid"]).columns) == [("valid", "ours"), ("valid", "paper")]


def test_run_defaults_to_the_runs_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LESSONS_RUNS", str(tmp_path))
    params = {"dataset": "synthetic", "profile": "smoke"}
    run = chapter.Run(None, "001_cdnn29", "p", params, {})
    assert run.out == tmp_path / "001_cdnn29" / "smoke-synthetic"
    assert (run.out / "params.json").is_file()
    assert chapter.default_out("001_cdnn29", "full", "isic2017") == (
        tmp_path / "001_cdnn29" / "full-isic2017"
    )


def test_run_refuses_an_unknown_chapter_id(tmp_path: Path) -> None:
    for wrong in ("test_chapter", "001_cdnn29_yuan_lo", "002_resnet34_unet.ipynb"):
        with pytest.raises(ValueError, match=f"chapter id '{re.escape(wrong)}'") as err:
            chapter.Run(tmp_path / wrong, wrong, "p", {}, {})
        known = str(err.value).split("known chapters: ")[1].split(", ")
        assert {"001_cdnn29", "002_resnet34_unet", "data_and_metrics", "leaderboard"} <= set(known)
        assert not (tmp_path / wrong).exists()  # refused before writing anything


def test_figures(tiny, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from lessons_lib.viz import plot_history, plot_ja_distribution, show_overlays, worst_cases

    _, data, *_, learn, out = tiny
    per_image, _, small = evaluate(learn, data, "valid")
    run = chapter.Run(tmp_path, "002_resnet34_unet", "p", {}, {})
    for name, fig in {
        "history": plot_history(pd.read_csv(out / "history.csv")),
        "overlay": show_overlays(data, "valid", list(small), small, per_image),
        "hist": plot_ja_distribution({"valid": per_image}),
    }.items():
        run.savefig(fig, name)
        with Image.open(tmp_path / "figures" / f"{name}.png") as png:
            assert png.format == "PNG"
            pixels = np.asarray(png.convert("RGB"))
        # saved at 110 dpi, cropped to what is drawn: about the figure's size, and not blank
        width, height = fig.get_size_inches() * 110
        assert 0.5 * width < pixels.shape[1] < 1.2 * width, name
        assert 0.5 * height < pixels.shape[0] < 1.2 * height, name
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, name
    assert worst_cases(per_image, k=1) == [per_image["jaccard"].idxmin()]


def test_poly_schedule_is_the_papers_curve() -> None:
    from lessons_lib.training.learner import poly_schedule

    f = poly_schedule([1e-3, 1e-2], power=0.9)
    assert np.allclose(f(0.0), [1e-3, 1e-2])
    assert np.allclose(f(0.5), np.array([1e-3, 1e-2]) * 0.5**0.9)  # not 1 - 0.5 ** 0.9
    assert np.allclose(f(1.0), 0.0)
