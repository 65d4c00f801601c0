"""``python -m lessons_lib predict``: a run's network(s) on a folder of images, as the chapter.

Two small run folders are built here without papermill, as the chapters build theirs: one
LesionSeg (chapter 000's pipeline: dihedral augmentation, per-image standardisation, bicubic
resizing, threshold and opening) and an ensemble of two CDNN-29 (chapter 001's: colour channels,
contrast augmentation, dual threshold at the model's size, bilinear), each trained for one epoch
(two iterations) on the shared synthetic dataset prepared at 24 px, evaluated with ``evaluate``
(``save_dir``), and recorded with ``predictor_spec`` / ``write_predictor``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.vision.augment import Dihedral
from fastcore.foundation import L
from fasttransform import Transform
from helpers import ADAM, SYNTH_COUNTS
from isic_challenge_scoring import metrics as official
from isic_challenge_scoring.confusion import create_binary_confusion_matrix
from isic_challenge_scoring.load_image import iter_image_pairs
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from lessons_lib import chapter, cli
from lessons_lib.data import prepare
from lessons_lib.data.layouts import list_images
from lessons_lib.errors import DataError
from lessons_lib.evaluation import evaluate, predict_probs
from lessons_lib.evaluation.external import evaluate_external, external_entries
from lessons_lib.evaluation.postprocess import dual_threshold, threshold_and_open
from lessons_lib.evaluation.predict import (
    PREDICTOR_FILE,
    PREDICTOR_SCHEMA,
    load_weights,
    predict_folder,
    predictor_spec,
    prepared_image,
    read_predictor,
    write_predictor,
)
from lessons_lib.losses import CrossEntropy2d, JaccardDistance
from lessons_lib.metrics import score_dirs
from lessons_lib.models import MODELS, build_model
from lessons_lib.training import fit_stage, make_learner, save_checkpoint, segmentation_dls
from lessons_lib.transforms import (
    CDNNChannels,
    PerImageStandardize,
    RandomChannelContrast,
    geometric_augment,
)

PREPARE_SIZE = 24  # below the synthetic images' shorter sides (48-60 px): prepare resizes
BS = 4  # predict with the evaluation's batch composition (8 images: the same two batches)
TRAIN_IMAGES = "ISIC-2017_Training_Data"
TRAIN_TRUTH = "ISIC-2017_Training_Part1_GroundTruth"


@pytest.fixture(scope="module")
def data(synthetic_root, tmp_path_factory):
    """The shared synthetic dataset, prepared at 24 px (shorter side) in this module's folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LESSONS_CACHE", str(tmp_path_factory.mktemp("cache")))
        out = tmp_path_factory.mktemp("prepared") / "synthetic-24"
        return prepare(synthetic_root, "synthetic", PREPARE_SIZE, out=out, workers=1)


def _train(dls, model, loss, out: Path, seed: int):
    chapter.setup(seed)
    learn = make_learner(dls, model, loss, out, ADAM)
    fit_stage(learn, "train", 1, 1e-3, schedule="constant", monitor=None)
    return learn


@pytest.fixture(scope="module")
def single_run(data, tmp_path_factory):
    """Chapter 000's way: LesionSeg, evaluated on the training split into predictions/train."""
    run = tmp_path_factory.mktemp("run000")
    dls = segmentation_dls(
        data.pairs("train"),
        data.pairs("valid"),
        32,
        BS,
        aug=[Dihedral(p=1.0)],
        extra_tfms=[PerImageStandardize()],
        normalize=None,
        seed=0,
    )
    learn = _train(dls, build_model("lesionseg", n_out=2), CrossEntropy2d(), run, seed=0)
    # one epoch leaves the probabilities near one value, which side of 0.5 depends on the
    # threads: threshold at their median, so that the masks hold both values (what is tested is
    # that predict reproduces evaluate, not a good model)
    probs = np.concatenate([p.ravel() for p in predict_probs(learn, data.pairs("train"))])
    post = partial(threshold_and_open, t=float(np.median(probs)), footprint="cross")
    per_image, _, _ = evaluate(
        learn, data, "train", resize="bicubic", postprocess=post, save_dir=run / "predictions"
    )
    spec = predictor_spec(
        learn, data, run / "models" / "train.pth", resize="bicubic", postprocess=post
    )
    write_predictor(run, spec)
    (run / "metrics.json").write_text("{}")  # what a finished run also holds
    return run, learn, per_image


def _sharpen(learn, pairs, scale: float = 100.0) -> None:
    """Stretch CDNN-29's output logits around their median (``scale`` times).

    Two iterations leave its probabilities within 0.01 of 0.5, so the paper's dual threshold
    (0.8, 0.5) would give empty or full masks; what is tested is that predict reproduces
    evaluate, which needs masks with both values, not a good model.
    """
    probs = np.concatenate([p.ravel() for p in predict_probs(learn, pairs)]).astype(np.float64)
    median = float(np.median(np.log(probs / (1 - probs))))
    with torch.no_grad():
        learn.model.output.weight.mul_(scale)
        learn.model.output.bias.sub_(median).mul_(scale)


@pytest.fixture(scope="module")
def ensemble_run(data, tmp_path_factory):
    """Chapter 001's way: two CDNN-29 averaged, dual threshold at the model's size."""
    run = tmp_path_factory.mktemp("run001")
    learners, weights = [], []
    for i in range(2):
        dls = segmentation_dls(
            data.pairs("train"),
            data.pairs("valid"),
            (32, 48),
            BS,
            aug=geometric_augment(),
            extra_tfms=[CDNNChannels("rgbhsvl"), RandomChannelContrast()],
            normalize=([0.5] * 7, [0.25] * 7),
            seed=i,
        )
        learn = _train(
            dls, build_model("cdnn29", in_channels=7), JaccardDistance(), run / f"fold{i}", seed=i
        )
        _sharpen(learn, data.pairs("train"))
        learners.append(learn)
    # one plain state_dict (run.save_weights), one fastai checkpoint with its optimiser state
    weights.append(run / "models" / "fold0.pth")
    weights[0].parent.mkdir(parents=True)
    torch.save(learners[0].model.state_dict(), weights[0])
    weights.append(save_checkpoint(learners[1], "with_opt", with_opt=True))
    # no hole filling: the barely trained networks' maps hold rings, and filled they cover all
    post = partial(dual_threshold, fill_holes=False)
    how = dict(resize="bilinear", postprocess=post, postprocess_at="model")
    evaluate(learners, data, "train", save_dir=run / "predictions", **how)
    write_predictor(run, predictor_spec(learners, data, weights, **how))
    return run, learners


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_segmentation.png"))}


def _predict(run: Path, images: Path, out: Path, *extra: str) -> int:
    argv = ["predict", "--run", str(run), "--images", str(images), "--out", str(out)]
    return cli.main([*argv, "--batch-size", str(BS), *extra])


# ----------------------------------------------------------------------------- the spec
def test_spec_records_the_chapters_pipeline(single_run, ensemble_run) -> None:
    spec = json.loads((single_run[0] / PREDICTOR_FILE).read_text())
    assert spec["schema_version"] == PREDICTOR_SCHEMA
    assert spec["models"] == [
        {
            "name": "lesionseg",
            "kwargs": {"n_out": 2},
            "weights": "models/train.pth",
            "activation": "softmax",
        }
    ]
    assert (spec["prepare_size"], spec["input_size"]) == (PREPARE_SIZE, [32, 32])
    assert spec["transforms"] == [{"name": "PerImageStandardize", "kwargs": {}}]  # no Dihedral
    assert spec["postprocess"]["name"] == "threshold_and_open"
    assert spec["postprocess"]["kwargs"] == {"t": pytest.approx(0.5, abs=0.1), "footprint": "cross"}
    assert (spec["resize"], spec["postprocess_at"]) == ("bicubic", "original")

    spec = read_predictor(ensemble_run[0])
    assert [m["weights"] for m in spec["models"]] == [
        "models/fold0.pth",
        "fold1/models/with_opt.pth",
    ]
    assert {m["activation"] for m in spec["models"]} == {"sigmoid"}
    assert spec["models"][0]["kwargs"] == {"in_channels": 7}
    assert spec["input_size"] == [32, 48]  # (height, width)
    assert spec["transforms"] == [  # the training-only augmentations are left out
        {"name": "CDNNChannels", "kwargs": {"channels": "rgbhsvl"}},
        {"name": "Normalize", "kwargs": {"mean": [0.5] * 7, "std": [0.25] * 7}},
    ]
    assert spec["postprocess"] == {"name": "dual_threshold", "kwargs": {"fill_holes": False}}
    assert spec["postprocess_at"] == "model"


def test_prepared_image_is_the_cached_image(data) -> None:
    entries = data.entries("train")
    assert len(entries) == SYNTH_COUNTS["train"]  # the loop below is not empty
    for entry in entries:
        image, size = prepared_image(entry["orig_image"], PREPARE_SIZE)
        cached = np.asarray(Image.open(data.path / entry["image"]).convert("RGB"))
        assert image.size == tuple(entry["size"]) and size == tuple(entry["orig_size"])
        assert np.array_equal(np.asarray(image.convert("RGB")), cached)


# ----------------------------------------------------------------------------- predicting
def test_predict_equals_evaluate_and_the_official_scorer_agrees(
    single_run, synthetic_root, tmp_path, capsys
) -> None:
    run, _, per_image = single_run
    images, truth = synthetic_root / TRAIN_IMAGES, synthetic_root / TRAIN_TRUTH
    out, archive = tmp_path / "out", tmp_path / "submission.zip"
    assert _predict(run, images, out, "--zip", str(archive)) == 0
    assert "wrote 8 masks" in capsys.readouterr().out

    ours, theirs = _masks(out), _masks(run / "predictions")
    assert 0 < np.mean([m.mean() / 255 for m in ours.values()]) < 1  # neither empty nor full
    stems = sorted(p.stem for p in images.glob("ISIC_???????.jpg"))
    assert sorted(ours) == [f"{s}_segmentation.png" for s in stems]  # superpixel maps skipped
    for name, mask in ours.items():
        with Image.open(images / name.replace("_segmentation.png", ".jpg")) as original:
            assert mask.shape == (original.height, original.width)
        assert Image.open(out / name).mode == "L" and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask, theirs[name]), name  # the chapter's own evaluation output

    scores = score_dirs(truth, out)
    for pair in iter_image_pairs(truth, out):
        cm = create_binary_confusion_matrix(pair.truth_image > 128, pair.prediction_image > 128)
        row = scores.loc[pair.image_id]
        assert row["jaccard"] == pytest.approx(official.binary_jaccard(cm), abs=1e-12)
        assert row["dice"] == pytest.approx(official.binary_dice(cm), abs=1e-12)
        assert row["jaccard"] == pytest.approx(per_image.loc[pair.image_id, "jaccard"], abs=1e-12)
    macro = SegmentationScore.from_dir(truth, out).macro_average
    assert cli.main(["score", str(truth), str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    for key in ("jaccard", "dice", "threshold_jaccard", "accuracy"):
        assert summary[key] == pytest.approx(macro[key], abs=1e-12), key

    with zipfile.ZipFile(archive) as z:  # the submission: the masks, flat at the root
        assert sorted(z.namelist()) == sorted(ours)
        assert all(z.read(n) == (out / n).read_bytes() for n in z.namelist())
    truth_zip = tmp_path / "truth.zip"
    with zipfile.ZipFile(truth_zip, "w") as z:
        for path in truth.iterdir():
            z.write(path, f"{TRAIN_TRUTH}/{path.name}")
    from_zip = SegmentationScore.from_zip_file(truth_zip, archive).macro_average
    assert from_zip["jaccard"] == pytest.approx(macro["jaccard"], abs=1e-12)


def test_ensemble_with_model_size_postprocessing_equals_evaluate(
    ensemble_run, synthetic_root, tmp_path
) -> None:
    run, _ = ensemble_run
    written = predict_folder(run, synthetic_root / TRAIN_IMAGES, tmp_path, batch_size=BS).masks
    ours, theirs = _masks(tmp_path), _masks(run / "predictions")
    assert [p.name for p in written] == sorted(theirs) == sorted(ours)
    assert 0 < np.mean([m.mean() / 255 for m in ours.values()]) < 1  # neither empty nor full
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name


def test_pretrained_is_never_rebuilt_from_the_spec(
    single_run, synthetic_root, tmp_path, monkeypatch
) -> None:
    """A model is rebuilt with pretrained=False (what build_model records), so nothing downloads."""
    calls = []

    def probe(*, n_out: int = 2, pretrained: bool = True):
        calls.append(pretrained)
        return build_model("lesionseg", n_out=n_out)

    monkeypatch.setitem(MODELS, "probe_net", probe)
    assert build_model("probe_net", pretrained=True).build_spec == {
        "name": "probe_net",
        "kwargs": {"pretrained": False},
    }
    run = _copy(single_run[0], tmp_path)
    spec = json.loads((run / PREDICTOR_FILE).read_text())
    spec["models"][0].update(name="probe_net", kwargs={"n_out": 2, "pretrained": True})
    (run / PREDICTOR_FILE).write_text(json.dumps(spec))
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(synthetic_root / TRAIN_IMAGES / "ISIC_0000000.jpg", images / "a.jpg")
    result = predict_folder(run, images, tmp_path / "out")
    assert result.masks == [tmp_path / "out/a_segmentation.png"]
    assert calls[-1] is False


# ----------------------------------------------------------------------------- errors
def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _error(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err


def test_run_folder_errors(single_run, synthetic_root, tmp_path, capsys) -> None:
    images = str(synthetic_root / TRAIN_IMAGES)
    run = _copy(single_run[0], tmp_path)
    args = ["predict", "--run", str(run), "--images", images, "--out", str(tmp_path / "o")]

    spec = json.loads((run / PREDICTOR_FILE).read_text())
    (run / PREDICTOR_FILE).write_text(json.dumps({**spec, "schema_version": 0}))
    err = _error(capsys, *args)
    assert "schema version 0" in err and f"version {PREDICTOR_SCHEMA}" in err
    assert "rerun the chapter" in err

    (run / PREDICTOR_FILE).write_text(json.dumps({**spec, "resize": "lanczos"}))
    assert "'resize'" in _error(capsys, *args)
    for threshold in ("5", "NaN", "-0.1"):  # json.loads reads NaN as a float
        text = json.dumps(spec).replace(
            f'"threshold": {spec["threshold"]}', f'"threshold": {threshold}'
        )
        (run / PREDICTOR_FILE).write_text(text)
        err = _error(capsys, *args)
        assert "field 'threshold' must be a probability between 0 and 1" in err, threshold

    (run / PREDICTOR_FILE).write_text(json.dumps(spec))
    weights = run / "models" / "train.pth"
    saved = weights.read_bytes()
    for content, says in [
        (b"", "the weights file is empty"),
        (b"hello, not weights\n", "not a PyTorch weights file (torch.load could not read it"),
        (Path("/etc/passwd").read_bytes(), "not a PyTorch weights file"),
    ]:
        weights.write_bytes(content)
        err = _error(capsys, *args)
        assert says in err and str(weights) in err and "Traceback" not in err, says
    weights.write_bytes(saved)
    weights.unlink()
    err = _error(capsys, *args)
    assert "weights file not found" in err and str(run / "models" / "train.pth") in err

    (run / PREDICTOR_FILE).unlink()  # a run of before predict: metrics.json, no spec
    err = _error(capsys, *args)
    assert "made before predict existed" in err and "rerun the chapter" in err

    (run / "metrics.json").unlink()
    assert "not a run folder" in _error(capsys, *args)
    assert not (tmp_path / "o").exists()


def test_images_folder_errors(single_run, tmp_path, capsys) -> None:
    run, out = str(single_run[0]), str(tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "ISIC_0000000_superpixels.png").write_bytes(b"")  # not an image to predict
    err = _error(capsys, "predict", "--run", run, "--images", str(empty), "--out", out)
    assert "no images" in err and str(empty) in err

    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("RGB", (40, 30), (200, 120, 90)).save(broken / "ISIC_0000001.jpg")
    (broken / "ISIC_0000002.jpg").write_bytes(b"not a JPEG at all")
    err = _error(capsys, "predict", "--run", run, "--images", str(broken), "--out", out)
    assert str(broken / "ISIC_0000002.jpg") in err and "not a readable image" in err


def test_every_bad_image_is_listed_before_anything_is_predicted(
    single_run, synthetic_root, tmp_path, capsys
) -> None:
    """Two unreadable images among good ones: one error lists both and predicts nothing;
    --skip-bad predicts the others, names the two, and zips only what it wrote."""
    images = tmp_path / "images"
    shutil.copytree(synthetic_root / TRAIN_IMAGES, images)
    good = sorted(p.name for p in images.glob("*.jpg"))
    (images / "ISIC_0000001.jpg").write_bytes(b"not a JPEG at all")
    Image.new("CMYK", (40, 30), (0, 80, 120, 10)).save(images / "ISIC_9999999.jpg")
    run, out = str(single_run[0]), tmp_path / "out"
    err = _error(capsys, "predict", "--run", run, "--images", str(images), "--out", str(out))
    assert f"2 of {len(good) + 1} images cannot be read; nothing was predicted" in err
    assert str(images / "ISIC_0000001.jpg") in err and str(images / "ISIC_9999999.jpg") in err
    assert "colour mode 'CMYK'" in err and "--skip-bad" in err
    assert not out.exists()  # checked first: no mask, no half-done folder

    zipped = tmp_path / "masks.zip"
    assert _predict(Path(run), images, out, "--skip-bad", "--zip", str(zipped)) == 0
    said = capsys.readouterr().out
    assert f"wrote {len(good) - 1} masks to {out}" in said and "skipped 2 images" in said
    assert "ISIC_0000001.jpg" in said and "ISIC_9999999.jpg" in said
    expected = sorted(f"{Path(n).stem}_segmentation.png" for n in good if n != "ISIC_0000001.jpg")
    assert sorted(_masks(out)) == expected
    assert sorted(zipfile.ZipFile(zipped).namelist()) == expected
    only_bad = tmp_path / "only_bad"  # --skip-bad with nothing readable: an error, not 0 masks
    only_bad.mkdir()
    shutil.copy(images / "ISIC_0000001.jpg", only_bad)
    err = _error(
        capsys, "predict", "--run", run, "--images", str(only_bad), "--out", str(out), "--skip-bad"
    )
    assert "1 of 1 images cannot be read; nothing was predicted" in err


def test_a_rerun_into_the_same_folder_continues(single_run, synthetic_root, tmp_path, capsys):
    """Predict stopped after some masks (one deleted here): the rerun predicts only the missing
    one, keeps the others untouched, and the masks equal a run that never stopped. Masks of
    another run (or other weights) in that folder are refused."""
    run, images, out = single_run[0], synthetic_root / TRAIN_IMAGES, tmp_path / "out"
    assert _predict(run, images, out) == 0
    reference = _masks(out)
    first, *others = sorted(out.glob("*_segmentation.png"))
    first.unlink()  # the mask the interrupted run had not written yet
    stamps = {p: p.stat().st_mtime_ns for p in others}
    capsys.readouterr()
    assert _predict(run, images, out) == 0
    assert f"wrote 1 masks to {out}; kept the {len(others)} the previous run wrote" in (
        capsys.readouterr().out
    )
    assert {p: p.stat().st_mtime_ns for p in others} == stamps  # not predicted again
    assert _masks(out).keys() == reference.keys()
    assert all(np.array_equal(_masks(out)[k], v) for k, v in reference.items())

    other = _copy(run, tmp_path)  # the same weights in another run folder
    err = _error(capsys, "predict", "--run", str(other), "--images", str(images), "--out", str(out))
    assert "masks predicted with another run folder or other weights" in err and str(out) in err
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "ISIC_0000000_segmentation.png").write_bytes(b"")  # not written by predict
    err = _error(capsys, "predict", "--run", str(run), "--images", str(images), "--out", str(loose))
    assert "masks that predict did not record" in err


def test_the_cmyk_advice_works(single_run, synthetic_root, tmp_path, capsys) -> None:
    """The fix a CMYK image's error gives, run as written in the images folder, gives an RGB
    copy that predicts, and leaves the folder predictable (no second image of the same name)."""
    images = tmp_path / "images"
    images.mkdir()
    Image.open(synthetic_root / TRAIN_IMAGES / "ISIC_0000000.jpg").convert("CMYK").save(
        images / "ISIC_0000000.jpg"
    )
    run = str(single_run[0])
    err = _error(capsys, "predict", "--run", run, "--images", str(images), "--out", "o")
    command = err.split("e.g. `", 1)[1].split("`", 1)[0]
    subprocess.run(
        command.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=images, check=True
    )
    assert list_images(images) == [images / "ISIC_0000000.jpg"]  # no clash beside it
    assert _predict(Path(run), images / "srgb", tmp_path / "out") == 0
    assert sorted(_masks(tmp_path / "out")) == ["ISIC_0000000_segmentation.png"]


class _Planted:
    """Unpickling this would create a file: the proof that a checkpoint was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_are_never_unpickled(single_run, synthetic_root, tmp_path, capsys) -> None:
    run = _copy(single_run[0], tmp_path)
    weights = run / "models" / "train.pth"
    marker = tmp_path / "unpickled"
    state = torch.load(weights, weights_only=True)
    torch.save({**state, "extra": _Planted(marker)}, weights)
    err = _error(
        capsys,
        "predict",
        "--run",
        str(run),
        "--images",
        str(synthetic_root / TRAIN_IMAGES),
        "--out",
        str(tmp_path / "o"),
    )
    assert "refused" in err and "weights_only" in err and str(weights) in err
    assert not marker.exists()

    torch.save({k: v for k, v in state.items() if "weight" not in k}, weights)
    with pytest.raises(DataError, match="do not fit model lesionseg"):
        predict_folder(run, synthetic_root / TRAIN_IMAGES, tmp_path / "o")


def test_load_weights_reads_both_fastai_formats(ensemble_run) -> None:
    run, learners = ensemble_run
    plain = load_weights(run / "models" / "fold0.pth")
    with_opt = load_weights(run / "fold1" / "models" / "with_opt.pth")
    assert set(plain) == set(with_opt) == set(learners[1].model.state_dict())
    with torch.serialization.safe_globals([L]):
        assert "opt" in torch.load(run / "fold1/models/with_opt.pth", weights_only=True)


# ----------------------------------------------------------------------------- recording
class _Unknown(Transform):
    order = 70

    def encodes(self, x):
        return x


def test_what_cannot_be_recorded(single_run, data, tmp_path) -> None:
    run, learn, _ = single_run
    weights = run / "models" / "train.pth"
    with pytest.raises(ValueError, match="not recordable"):
        predictor_spec(learn, data, weights, postprocess=lambda p: p > 0.5)
    with pytest.raises(ValueError, match="not JSON"):
        predictor_spec(
            learn,
            data,
            weights,
            postprocess=partial(threshold_and_open, footprint=np.ones((3, 3), bool)),
        )
    with pytest.raises(ValueError, match="one weights file per Learner"):
        predictor_spec([learn, learn], data, weights)

    pairs = data.pairs("train")
    dls = segmentation_dls(pairs[:4], pairs[4:], 32, BS, extra_tfms=[_Unknown()])
    other = make_learner(dls, build_model("lesionseg"), CrossEntropy2d(), tmp_path, ADAM)
    with pytest.raises(ValueError, match="_Unknown runs on validation batches"):
        predictor_spec(other, data, weights)
    other.model = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="not built by lessons_lib.models.build_model"):
        predictor_spec(other, data, weights)

    with pytest.raises(DataError, match="outside the run folder"):
        write_predictor(tmp_path, predictor_spec(learn, data, weights))


# ------------------------------------------------------------------- external validation
def _folder_dataset(root: Path, images: Path, truth: Path) -> Path:
    """The ``folder`` layout (images/, masks/) holding copies of an ISIC split's originals."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image in sorted(images.glob("ISIC_???????.jpg")):
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(truth / f"{image.stem}_segmentation.png", root / "masks")
    return root


def test_external_validation_scores_as_the_chapter_scores(
    single_run, synthetic_root, tmp_path
) -> None:
    """Another dataset's images take the run's own path: the training images, read as a
    ``folder`` dataset, score exactly what the chapter's evaluation scored on them."""
    run, _, per_image = single_run
    root = _folder_dataset(
        tmp_path / "other", synthetic_root / TRAIN_IMAGES, synthetic_root / TRAIN_TRUTH
    )
    scores, summary, small = evaluate_external(
        run, "folder", root, save_dir=tmp_path / "masks", batch_size=BS
    )
    assert summary["n_images"] == len(per_image) == 8 and set(small) == set(per_image.index)
    pd.testing.assert_frame_equal(scores, per_image)
    for name, mask in _masks(tmp_path / "masks").items():
        assert np.array_equal(mask, _masks(run / "predictions")[name]), name

    every = [e["id"] for e in external_entries("synthetic", synthetic_root)]
    assert len(every) == sum(SYNTH_COUNTS.values())  # every split: nothing held back
    with pytest.raises(DataError, match="not found|folder") as err:
        evaluate_external(run, "ph2", root)  # the layout is not PH2's: said, with the folder
    assert str(root) in str(err.value)
    shutil.copy(root / "images" / f"{every[0]}.jpg", root / "images" / f"{every[0]}.png")
    with pytest.raises(DataError, match="two images have the id"):
        external_entries("folder", root)


def test_a_run_records_its_external_validation(single_run, synthetic_root, tmp_path, capsys):
    """``Run.external_evaluation``: nothing asked, nothing done (and said how to ask); the
    training folder refused; else the result ``external``, its CSV and its masks."""
    source, _, per_image = single_run
    params = {"profile": "smoke", "dataset": "synthetic", "data_dir": str(synthetic_root)}
    run = chapter.Run(tmp_path / "run", "000_lesionseg", "paper", params, {})
    shutil.copy(source / PREDICTOR_FILE, run.out / PREDICTOR_FILE)
    shutil.copytree(source / "models", run.out / "models")
    assert run.external_evaluation(None, None) is None
    assert "-p external_dataset ph2" in capsys.readouterr().out
    with pytest.raises(DataError, match="the dataset this run trained on"):
        run.external_evaluation("synthetic", synthetic_root)
    other = _folder_dataset(
        tmp_path / "other", synthetic_root / TRAIN_IMAGES, synthetic_root / TRAIN_TRUTH
    )
    scores = run.external_evaluation("folder", other, batch_size=BS)
    (result,) = run.results
    assert result.name == "external" and result.details == {"external": "folder"}
    assert result.metrics["n_images"] == 8 and result.reported == []
    assert "every image (8), none seen in training" in result.evaluated_on
    saved = pd.read_csv(run.out / "per_image_external.csv", index_col=0)
    assert saved["jaccard"].tolist() == pytest.approx(per_image["jaccard"].tolist(), abs=1e-12)
    pd.testing.assert_frame_equal(scores, per_image)  # returned, as the chapters keep them
    assert len(list((run.out / "predictions" / "external").glob("*.png"))) == 8
    assert f"mean JA {result.metrics['jaccard']:.3f}" in capsys.readouterr().out
