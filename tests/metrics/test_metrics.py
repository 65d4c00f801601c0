"""Tests of lessons_lib.metrics against the official ISIC scorer (``isic-challenge-scoring``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring import metrics as ref_metrics
from isic_challenge_scoring.confusion import create_binary_confusion_matrix
from isic_challenge_scoring.load_image import iter_image_pairs
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from lessons_lib import metrics
from lessons_lib.errors import DataError

# the official scorer uses a pandas keyword that pandas 3.1 deprecates; not our code
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")

COLUMNS = ["accuracy", "sensitivity", "specificity", "dice", "jaccard", "threshold_jaccard"]


def reference_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Per-image metrics computed by the official scorer's own functions."""
    cm = create_binary_confusion_matrix(truth > 128, pred > 128)
    return {
        "accuracy": ref_metrics.binary_accuracy(cm),
        "sensitivity": ref_metrics.binary_sensitivity(cm),
        "specificity": ref_metrics.binary_specificity(cm),
        "dice": ref_metrics.binary_dice(cm),
        "jaccard": ref_metrics.binary_jaccard(cm),
        "threshold_jaccard": ref_metrics.binary_threshold_jaccard(cm, threshold=0.65),
    }


def reference_per_image(truth_dir: Path, pred_dir: Path) -> pd.DataFrame:
    """Per-image table of the official file matching and metrics."""
    rows = {
        pair.image_id: reference_scores(pair.truth_image, pair.prediction_image)
        for pair in iter_image_pairs(truth_dir, pred_dir)
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)


def random_pairs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """uint8 truth/prediction pairs of many sizes and densities, with values near 128.

    The value 1 is left out on purpose: an array of only 0s and 1s is read as a 0/1 mask.
    """
    rng = np.random.default_rng(seed)
    grey = np.array([0, 2, 50, 127, 128, 129, 130, 200, 254, 255], dtype=np.uint8)
    pairs = []
    for shape in [(1, 1), (1, 9), (7, 13), (32, 32), (64, 48), (120, 160)]:
        for density in [0.0, 0.02, 0.3, 0.7, 1.0]:
            for flip in [0.0, 0.05, 0.2, 0.5]:
                truth = rng.random(shape) < density
                pred = truth ^ (rng.random(shape) < flip)
                t = np.where(truth, rng.choice(grey[5:], shape), rng.choice(grey[:5], shape))
                p = np.where(pred, rng.choice(grey[5:], shape), rng.choice(grey[:5], shape))
                pairs.append((t.astype(np.uint8), p.astype(np.uint8)))
        # raw grey noise, binarised only by the > 128 rule
        pairs.append(tuple(rng.integers(2, 256, shape, dtype=np.uint8) for _ in range(2)))
    return pairs


def edge_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    zero, full = np.zeros((6, 5), np.uint8), np.full((6, 5), 255, np.uint8)
    some = zero.copy()
    some[1:4, 2:4] = 255
    at128 = np.full((6, 5), 128, np.uint8)
    return {
        "empty_truth": (zero, some),
        "empty_pred": (some, zero),
        "both_empty": (zero, zero),
        "both_full": (full, full),
        "full_truth_empty_pred": (full, zero),
        "empty_truth_full_pred": (zero, full),
        "full_truth_some_pred": (full, some),
        "all_128_is_background": (at128, zero),
    }


ALL_CASES = {f"random{i}": pair for i, pair in enumerate(random_pairs())} | edge_pairs()


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_per_image_matches_official(name: str) -> None:
    truth, pred = ALL_CASES[name]
    expected = reference_scores(truth, pred)
    got = metrics.score_pair(truth, pred)
    assert list(got) == COLUMNS
    for key in COLUMNS:
        assert got[key] == pytest.approx(expected[key], abs=1e-12, rel=0), key
    assert metrics.accuracy(truth, pred) == pytest.approx(expected["accuracy"], abs=1e-12)
    assert metrics.sensitivity(truth, pred) == pytest.approx(expected["sensitivity"], abs=1e-12)
    assert metrics.specificity(truth, pred) == pytest.approx(expected["specificity"], abs=1e-12)
    assert metrics.dice(truth, pred) == pytest.approx(expected["dice"], abs=1e-12)
    assert metrics.jaccard(truth, pred) == pytest.approx(expected["jaccard"], abs=1e-12)
    assert metrics.threshold_jaccard(truth, pred) == pytest.approx(
        expected["threshold_jaccard"], abs=1e-12
    )
    # bool input gives the same result as the 8-bit input it came from
    assert metrics.score_pair(truth > 128, pred > 128) == got


def test_macro_average_matches_official() -> None:
    scorer = metrics.SegmentationScorer()
    pairs = []
    for i, (truth, pred) in enumerate(ALL_CASES.values()):
        image_id = f"ISIC_{i:07d}"
        scorer.add(image_id, truth, pred)
        pairs.append(SimpleNamespace(image_id=image_id, truth_image=truth, prediction_image=pred))
    official = SegmentationScore(pairs).macro_average
    summary = scorer.summary()
    assert summary["n_images"] == len(ALL_CASES)
    for key in COLUMNS:
        assert summary[key] == pytest.approx(official[key], abs=1e-12, rel=0), key
    # the random cases span the 0.65 threshold, so the two Jaccard means really differ
    assert summary["threshold_jaccard"] < summary["jaccard"] - 0.01


def test_edge_case_conventions() -> None:
    cases = {name: metrics.score_pair(*pair) for name, pair in edge_pairs().items()}
    assert cases["both_empty"] == dict.fromkeys(COLUMNS, 1.0)
    assert cases["both_full"] == dict.fromkeys(COLUMNS, 1.0)
    assert cases["empty_truth"]["sensitivity"] == 1.0
    assert cases["empty_truth"]["jaccard"] == 0.0 and cases["empty_truth"]["dice"] == 0.0
    assert cases["empty_pred"]["sensitivity"] == 0.0 and cases["empty_pred"]["specificity"] == 1.0
    assert cases["full_truth_empty_pred"]["specificity"] == 1.0
    assert cases["full_truth_empty_pred"]["accuracy"] == 0.0
    assert cases["all_128_is_background"] == dict.fromkeys(COLUMNS, 1.0)


def test_hand_computed_tiny_mask() -> None:
    truth = np.zeros((4, 4), np.uint8)
    truth[0:2, 0:2] = 255  # 4 lesion pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[0, 0:3] = 255  # hits 2, one false positive
    pred[1, 0] = 129  # hits (129 > 128)
    pred[3, 3] = 255  # false positive
    pred[2, 2] = 128  # 128 is background
    assert metrics.confusion(truth, pred) == {"tp": 3, "fp": 2, "tn": 10, "fn": 1}
    assert metrics.score_pair(truth, pred) == pytest.approx(
        {
            "accuracy": 13 / 16,
            "sensitivity": 3 / 4,
            "specificity": 10 / 12,
            "dice": 6 / 9,
            "jaccard": 3 / 6,
            "threshold_jaccard": 0.0,
        },
        abs=1e-15,
    )
    assert metrics.threshold_jaccard(truth, pred, threshold=0.5) == 0.5


def test_mask_conventions() -> None:
    zero_one = np.array([[0, 1], [1, 0]], np.uint8)
    assert metrics.confusion(zero_one, zero_one.astype(bool))["tp"] == 2
    # once any value is above 1 the > 128 rule applies, so 1 is background
    mixed = np.array([[0, 1], [255, 0]], np.uint8)
    assert metrics.confusion(mixed, mixed > 128) == {"tp": 1, "fp": 0, "tn": 3, "fn": 0}
    assert metrics.confusion(np.array([[0, 1]], np.int64), np.array([[0, 255]]))["tp"] == 1
    with pytest.raises(TypeError, match="float"):
        metrics.dice(np.zeros((2, 2)), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        metrics.dice(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="2-D"):
        metrics.dice(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 4), bool))


def test_pooled_differs_from_per_image_mean() -> None:
    scorer = metrics.SegmentationScorer()
    big = np.zeros((100, 100), bool)
    big[10:90, 10:90] = True  # 6400-pixel lesion, predicted perfectly
    small = np.zeros((100, 100), bool)
    small[50:54, 50:54] = True  # 16-pixel lesion, missed entirely
    scorer.add("big", big, big)
    scorer.add("small", small, np.zeros_like(small))
    summary = scorer.summary()
    assert summary["jaccard"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert summary["dice"] == pytest.approx(0.5)
    assert summary["pooled_jaccard"] == pytest.approx(6400 / 6416)
    assert summary["pooled_dice"] == pytest.approx(2 * 6400 / (2 * 6400 + 16))
    assert summary["n_images"] == 2
    assert list(summary)[:6] == COLUMNS
    table = scorer.per_image()
    assert table.index.name == "image_id" and list(table.columns) == COLUMNS
    assert list(table.index) == ["big", "small"]
    assert table.loc["small", "jaccard"] == 0.0
    assert scorer.counts().loc["small"].to_dict() == {"tp": 0, "fp": 0, "tn": 9984, "fn": 16}


def test_scorer_misuse() -> None:
    scorer = metrics.SegmentationScorer()
    with pytest.raises(ValueError, match="no image"):
        scorer.summary()
    scorer.add("a", np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="already added"):
        scorer.add("a", np.ones((2, 2), bool), np.ones((2, 2), bool))
    scorer.reset()
    assert len(scorer) == 0 and scorer.per_image().empty


def save(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode != "L" else image).save(path)


@pytest.fixture()
def good_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Truth and prediction folders named as the scorer expects, with a few quirks."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    pairs = random_pairs(seed=1)[::7] + list(edge_pairs().values())
    pred_names = ["ISIC_{}_segmentation.png", "ISIC_{}.png", "mask-{}-final.png"]
    for i, (truth, pred) in enumerate(pairs):
        number = f"{i + 10:07d}"
        save(truth_dir / f"ISIC_{number}_segmentation.png", truth)
        save(pred_dir / pred_names[i % 3].format(number), pred, mode="1" if i == 4 else "L")
    (truth_dir / "ATTRIBUTION.txt").write_text("ignored")
    (truth_dir / "LICENSE.txt").write_text("ignored")
    save(pred_dir / "ISIC_0999999.png", pairs[0][1])  # extra predictions are ignored
    return truth_dir, pred_dir


def test_score_dirs_matches_official(good_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = good_dirs
    table = metrics.score_dirs(truth_dir, pred_dir)
    assert list(table.columns) == COLUMNS and table.index.name == "image_id"
    expected = reference_per_image(truth_dir, pred_dir)
    assert list(table.index) == list(expected.index)
    assert np.allclose(table.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    official = SegmentationScore.from_dir(truth_dir, pred_dir).macro_average
    summary = metrics.score_dirs_summary(truth_dir, pred_dir)
    for key in COLUMNS:
        assert summary[key] == pytest.approx(official[key], abs=1e-12, rel=0), key
    assert summary["n_images"] == len(expected)


def test_score_dirs_reads_0_1_files_as_masks(tmp_path: Path) -> None:
    """A 0/1-valued PNG (what a loader's mask or ``probs > 0.5`` saved as uint8 gives) is a
    0/1 mask, lesion where 1, as the loaders read it; 0/255 files still score as the official
    scorer scores them."""
    truth = np.zeros((8, 10), np.uint8)
    truth[2:6, 2:8] = 255  # 24 lesion pixels
    pred = np.zeros((8, 10), np.uint8)
    pred[3:7, 2:8] = 1  # 18 hits, 6 false positives, 6 misses
    save(tmp_path / "pred01" / "ISIC_0000001.png", pred)
    save(tmp_path / "pred255" / "ISIC_0000001.png", pred * 255)
    save(tmp_path / "truth" / "ISIC_0000001_segmentation.png", truth)
    save(tmp_path / "truth01" / "ISIC_0000001_segmentation.png", truth // 255)
    as01 = metrics.score_dirs(tmp_path / "truth", tmp_path / "pred01")
    as255 = metrics.score_dirs(tmp_path / "truth", tmp_path / "pred255")
    pd.testing.assert_frame_equal(as01, as255)
    assert as01.loc["ISIC_0000001", "jaccard"] == pytest.approx(18 / 30)
    assert as01.loc["ISIC_0000001", "dice"] == pytest.approx(36 / 48)
    official = reference_per_image(tmp_path / "truth", tmp_path / "pred255")
    assert np.allclose(as255.to_numpy(), official.to_numpy(), rtol=0, atol=1e-12)
    # a 0/1 ground truth is read the same way
    both01 = metrics.score_dirs(tmp_path / "truth01", tmp_path / "pred01")
    pd.testing.assert_frame_equal(both01, as01)


def test_score_dirs_all_zero_prediction_is_empty(tmp_path: Path) -> None:
    truth = np.zeros((4, 4), np.uint8)
    truth[:2] = 255
    save(tmp_path / "truth" / "ISIC_0000002_segmentation.png", truth)
    save(tmp_path / "pred" / "ISIC_0000002.png", np.zeros((4, 4), np.uint8))
    row = metrics.score_dirs(tmp_path / "truth", tmp_path / "pred").iloc[0]
    assert row["jaccard"] == 0.0 and row["specificity"] == 1.0 and row["sensitivity"] == 0.0


def test_main_score_output(good_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = good_dirs
    data = json.loads(metrics.main_score(truth_dir, pred_dir, as_json=True))
    summary = metrics.score_dirs_summary(truth_dir, pred_dir)
    assert data["summary"] == pytest.approx(summary)
    assert list(data["per_image"]["ISIC_0000010"]) == COLUMNS
    text = metrics.main_score(truth_dir, pred_dir)
    assert "ISIC_0000010" in text and "threshold_jaccard" in text
    assert f"{summary['pooled_jaccard']:.4f}" in text


def break_missing(truth_dir: Path, pred_dir: Path) -> str:
    (pred_dir / "ISIC_0000011.png").unlink()
    return "ISIC_0000011_segmentation.png"


def break_duplicate(truth_dir: Path, pred_dir: Path) -> str:
    save(pred_dir / "copy_0000011.png", np.zeros((1, 9), np.uint8))
    return "ISIC_0000011_segmentation.png"


def break_size(truth_dir: Path, pred_dir: Path) -> str:
    save(pred_dir / "ISIC_0000011.png", np.zeros((9, 1), np.uint8))
    return "ISIC_0000011.png"


def break_unreadable(truth_dir: Path, pred_dir: Path) -> str:
    (pred_dir / "ISIC_0000011.png").write_bytes(b"not a png at all")
    return "ISIC_0000011.png"


def break_rgb(truth_dir: Path, pred_dir: Path) -> str:
    save(pred_dir / "ISIC_0000011.png", np.zeros((1, 9), np.uint8), mode="RGB")
    return "ISIC_0000011.png"


def break_unknown_truth(truth_dir: Path, pred_dir: Path) -> str:
    (truth_dir / "notes.md").write_text("stray file")
    return "notes.md"


@pytest.mark.parametrize(
    "breaker",
    [break_missing, break_duplicate, break_size, break_unreadable, break_rgb, break_unknown_truth],
)
def test_score_dirs_errors(good_dirs: tuple[Path, Path], breaker) -> None:
    truth_dir, pred_dir = good_dirs
    file_name = breaker(truth_dir, pred_dir)
    # the official scorer refuses the same folders, naming the same file
    with pytest.raises(Exception, match=re.escape(file_name)):
        SegmentationScore.from_dir(truth_dir, pred_dir)
    with pytest.raises(DataError, match=re.escape(file_name)) as caught:
        metrics.score_dirs(truth_dir, pred_dir)
    assert caught.value.fix


def test_score_dirs_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        metrics.score_dirs(tmp_path / "nowhere", tmp_path)
    with pytest.raises(DataError, match="no ground-truth"):
        metrics.score_dirs(tmp_path, tmp_path)


@pytest.mark.realdata
def test_real_isic2017_truth_vs_eroded(samples: Path, tmp_path: Path) -> None:
    ISIC2017_TRUTH = samples / "isic2017-test-sample" / "ISIC-2017_Test_v2_Part1_GroundTruth"
    from scipy import ndimage

    truth_files = sorted(ISIC2017_TRUTH.glob("ISIC_*_segmentation.png"))
    assert truth_files
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for i, truth_file in enumerate(truth_files):
        truth = np.asarray(Image.open(truth_file))
        size = [3, 41, 121, 201, 301][i % 5]  # mild to severe erosion
        eroded = ndimage.minimum_filter(truth, size=size)
        Image.fromarray(eroded).save(pred_dir / f"{truth_file.stem.split('_seg')[0]}.png")
    table = metrics.score_dirs(ISIC2017_TRUTH, pred_dir)
    expected = reference_per_image(ISIC2017_TRUTH, pred_dir)
    assert list(table.index) == list(expected.index)
    assert np.allclose(table.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    official = SegmentationScore.from_dir(ISIC2017_TRUTH, pred_dir).macro_average
    summary = metrics.score_dirs_summary(ISIC2017_TRUTH, pred_dir)
    for key in COLUMNS:
        assert summary[key] == pytest.approx(official[key], abs=1e-12, rel=0), key
    # erosion only removes lesion pixels: no false positives, perfect specificity
    assert (table["specificity"] == 1.0).all()
    assert (table["sensitivity"] < 1.0).all()
