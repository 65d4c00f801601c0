"""``python -m lessons_lib score`` and lessons_lib.metrics.files, as a user gets them wrong.

The ISIC matching rule itself is compared with the official ``isic-challenge-scoring`` here and
in ``test_metrics.py``; these tests make the mistakes a user makes (0/1 predictions, several
missing or wrong-size predictions at once, PH2 and own-folder names) and check the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from lessons_lib import metrics
from lessons_lib.cli import main
from lessons_lib.errors import DataError

# the official scorer uses a pandas keyword that pandas 3.1 deprecates; not our code
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def lesion(h: int, w: int, top: int, left: int, value: int = 255) -> np.ndarray:
    """A rectangular lesion covering the bottom-right part of an ``h x w`` mask."""
    mask = np.zeros((h, w), np.uint8)
    mask[top:, left:] = value
    return mask


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its size and modification time."""
    return {
        str(p): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for folder in folders
        for p in sorted(folder.rglob("*"))
    }


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lessons_lib", "score", *args], capture_output=True, text=True
    )


@pytest.fixture()
def isic_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Five ISIC ground-truth masks (8x10) and a correct prediction for each."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    for i in range(5):
        number = f"{i + 1:07d}"
        save(truth_dir / f"ISIC_{number}_segmentation.png", lesion(8, 10, 2, 2 + i))
        save(pred_dir / f"ISIC_{number}_segmentation.png", lesion(8, 10, 3, 2))
    (truth_dir / "LICENSE.txt").write_text("ignored")
    return truth_dir, pred_dir


# --- 0/1 predictions ------------------------------------------------------------------------


def test_cli_scores_0_1_predictions_as_0_255(isic_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """``probs > 0.5`` saved as uint8 (values 0/1) scores what the same masks saved as 0/255
    score, not 0.000 for every image as the official scorer would."""
    truth_dir, pred255 = isic_dirs
    pred01 = tmp_path / "pred01"
    for path in pred255.iterdir():
        save(pred01 / path.name, np.asarray(Image.open(path)) // 255)
    assert set(np.unique(np.asarray(Image.open(next(pred01.iterdir()))))) == {0, 1}
    results = {}
    for name, folder in (("01", pred01), ("255", pred255)):
        proc = run_cli(str(truth_dir), str(folder), "--json")
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(proc.stdout)
    note = results["01"].pop("note")  # the one difference: a note on the 0/1 files
    assert note.startswith("note: 5 prediction file(s) hold only 0 and 1: read as lesion where 1")
    assert "--official" in note and "note" not in results["255"]
    assert results["01"] == results["255"]
    assert results["01"]["summary"]["n_images"] == 5
    assert 0.5 < results["01"]["summary"]["jaccard"] < 1
    text01 = run_cli(str(truth_dir), str(pred01)).stdout.splitlines()
    text255 = run_cli(str(truth_dir), str(pred255)).stdout.splitlines()
    assert text01[:2] == [note, ""]  # the note first, then the same table
    assert text01[3:] == text255[1:]  # the folder line names the folder


def test_official_scores_0_1_files_exactly_as_the_official_package(
    isic_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``score --official``: a 0/1 prediction is all background, as isic-challenge-scoring
    reads it; here two of the five predictions are 0/1 files, the others 0/255."""
    truth_dir, pred255 = isic_dirs
    pred = tmp_path / "mixed"
    for i, path in enumerate(sorted(pred255.iterdir())):
        mask = np.asarray(Image.open(path))
        save(pred / path.name, mask // 255 if i < 2 else mask)
    official = SegmentationScore.from_dir(truth_dir, pred).macro_average
    proc = run_cli(str(truth_dir), str(pred), "--json", "--official")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    for key in metrics.METRIC_NAMES:
        assert ours["summary"][key] == pytest.approx(official[key], abs=1e-12, rel=0), key
    assert ours["per_image"]["ISIC_0000001"]["jaccard"] == 0.0  # a 0/1 file: all background
    assert ours["note"].endswith("scored as the official scorer reads them, all background")
    default = json.loads(run_cli(str(truth_dir), str(pred), "--json").stdout)
    assert default["summary"]["jaccard"] > ours["summary"]["jaccard"]  # the rules differ here
    help_text = " ".join(run_cli("--help").stdout.split())
    assert "reads it as all background" in help_text and "--official" in help_text


# --- every problem in one pass -------------------------------------------------------------


def test_cli_lists_every_problem_at_once(
    isic_dirs: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    truth_dir, pred_dir = isic_dirs
    (pred_dir / "ISIC_0000001_segmentation.png").unlink()  # missing
    save(pred_dir / "ISIC_0000002_segmentation.png", np.zeros((9, 1), np.uint8))  # wrong size
    (pred_dir / "ISIC_0000003_segmentation.png").write_bytes(b"not a png")  # unreadable
    save(pred_dir / "copy_0000004.png", lesion(8, 10, 3, 2))  # a second candidate
    save(truth_dir / "ISIC_0000005_segmentation.png", lesion(8, 10, 2, 2, 255))  # still fine
    (truth_dir / "notes.md").write_text("stray file")  # not a mask, not an ISIC name
    before = snapshot(truth_dir, pred_dir)

    assert main(["score", str(truth_dir), str(pred_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no half-printed table
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == f"error: {pred_dir}: 5 problems, nothing was scored:"
    assert lines[-1] == "  fix: correct every file listed above, then run score again"
    entries = [line for line in lines if line.startswith("  - ")]
    assert len(entries) == 5
    expected = [
        (truth_dir / "ISIC_0000001_segmentation.png", "no prediction for this ground truth"),
        (pred_dir / "ISIC_0000002_segmentation.png", "prediction is 1x9 (WxH) but its ground"),
        (pred_dir / "ISIC_0000003_segmentation.png", "cannot read the mask image"),
        (pred_dir, "several predictions match ground truth ISIC_0000004_segmentation.png: "),
        (truth_dir / "notes.md", "not a mask file: its name has no ISIC id"),
    ]
    for entry, (path, problem) in zip(entries, expected, strict=True):
        assert entry.startswith(f"  - {path}: {problem}"), entry
    # each problem is followed by its own fix
    fixes = [line for line in lines if line.startswith("    fix: ")]
    assert len(fixes) == 5
    assert (
        "a mask whose file name contains 0000001, e.g. ISIC_0000001_segmentation.png" in (fixes[0])
    )
    assert "resize the prediction to the original image size" in fixes[1]
    assert entries[3].endswith(": ISIC_0000004_segmentation.png, copy_0000004.png")
    assert "keep exactly one of them" in fixes[3]
    assert "remove it from the ground-truth folder" in fixes[4]
    assert snapshot(truth_dir, pred_dir) == before  # nothing written or removed


def test_one_problem_is_reported_alone(isic_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = isic_dirs
    bad = save(pred_dir / "ISIC_0000002_segmentation.png", np.zeros((9, 1), np.uint8))
    with pytest.raises(DataError) as caught:
        metrics.score_dirs(truth_dir, pred_dir)
    assert caught.value.path == bad
    assert str(caught.value).startswith(f"{bad}: prediction is 1x9 (WxH) but its ground truth")
    assert "problems" not in str(caught.value)


def test_problems_only_in_truth_name_the_truth_folder(isic_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = isic_dirs
    (truth_dir / "notes.md").write_text("stray")
    (truth_dir / "ISIC_0000009_attribute_globules.png").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        metrics.score_dirs(truth_dir, pred_dir)
    first, *rest = str(caught.value).splitlines()
    assert first == f"{truth_dir}: 2 problems, nothing was scored:"
    assert "ISIC 2018 Task 2 attribute mask" in rest[0] and "notes.md" in rest[2]


def test_wrong_folders_get_a_hint(isic_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """Predictions given first, or an empty prediction folder: every file fails, and the
    message says to check the folders rather than leave the user to fix 5 files."""
    truth_dir, _ = isic_dirs
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(str(truth_dir), str(empty))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {empty}: 5 problems, nothing was scored:")
    assert "check that TRUTH_DIR and PRED_DIR are the right folders" in proc.stderr


def test_folder_mistakes(isic_dirs: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    truth_dir, pred_dir = isic_dirs
    a_file = truth_dir / "ISIC_0000001_segmentation.png"
    assert main(["score", str(a_file), str(pred_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {a_file}: TRUTH_DIR is a file, not a folder")
    assert main(["score", str(truth_dir), str(tmp_path / "nope")]) == 2
    assert "PRED_DIR not found" in capsys.readouterr().err
    only_licence = tmp_path / "licence"
    only_licence.mkdir()
    (only_licence / "LICENSE.txt").write_text("x")
    (only_licence / ".DS_Store").write_text("x")
    assert main(["score", str(only_licence), str(pred_dir)]) == 2
    assert "no ground-truth masks found in TRUTH_DIR" in capsys.readouterr().err


def test_hidden_files_are_ignored(isic_dirs: tuple[Path, Path]) -> None:
    """A ``.DS_Store`` in the ground truth is not a mask (the official scorer would stop)."""
    truth_dir, pred_dir = isic_dirs
    (truth_dir / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert len(metrics.score_dirs(truth_dir, pred_dir)) == 5


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_dangling_prediction_link(isic_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    truth_dir, pred_dir = isic_dirs
    link = pred_dir / "ISIC_0000003_segmentation.png"
    link.unlink()
    link.symlink_to(tmp_path / "moved-away.png")
    with pytest.raises(DataError, match="broken symbolic link") as caught:
        metrics.score_dirs(truth_dir, pred_dir)
    assert caught.value.path == link and "moved-away.png" in str(caught.value)


def test_isic_rule_is_the_official_one(isic_dirs: tuple[Path, Path]) -> None:
    """ISIC ids keep the official rule: any prediction whose name contains the 7 digits."""
    truth_dir, pred_dir = isic_dirs
    (pred_dir / "ISIC_0000002_segmentation.png").rename(pred_dir / "mask-0000002-v3.png")
    (pred_dir / "ISIC_0000003_segmentation.png").rename(pred_dir / "0000003.bmp.png")
    ours = metrics.score_dirs_summary(truth_dir, pred_dir)
    official = SegmentationScore.from_dir(truth_dir, pred_dir).macro_average
    for key in metrics.METRIC_NAMES:
        assert ours[key] == pytest.approx(official[key], abs=1e-12, rel=0), key


# --- PH2 and own-folder ids ----------------------------------------------------------------


@pytest.fixture()
def ph2_dirs(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """PH2 lesion masks (``IMDnnn_lesion.bmp``, collected into one folder) and predictions
    named as ``evaluate(save_dir=...)`` writes them, or by the bare id."""
    truth_dir, pred_dir = tmp_path / "ph2_truth", tmp_path / "ph2_pred"
    arrays = {
        "IMD002": (lesion(12, 16, 4, 4), lesion(12, 16, 5, 4)),
        "IMD0021": (lesion(12, 16, 2, 8), lesion(12, 16, 2, 6, value=1)),  # a 0/1 prediction
        "IMD004": (lesion(10, 14, 3, 3), lesion(10, 14, 3, 3)),
    }
    pred_names = {
        "IMD002": "IMD002_segmentation.png",
        "IMD0021": "IMD0021.png",
        "IMD004": "IMD004_lesion.bmp",
    }
    for image_id, (truth, pred) in arrays.items():
        save(truth_dir / f"{image_id}_lesion.bmp", truth)
        save(pred_dir / pred_names[image_id], pred)
    return truth_dir, pred_dir, arrays


def test_ph2_ids_are_scored(ph2_dirs) -> None:
    truth_dir, pred_dir, arrays = ph2_dirs
    table = metrics.score_dirs(truth_dir, pred_dir)
    # sorted by truth file name; IMD002 is not matched to IMD0021's prediction
    assert list(table.index) == ["IMD0021", "IMD002", "IMD004"]
    for image_id, (truth, pred) in arrays.items():
        expected = metrics.score_pair(truth, pred)
        assert table.loc[image_id].to_dict() == pytest.approx(expected), image_id
    assert table.loc["IMD004", "jaccard"] == 1.0


def test_ph2_through_the_cli(ph2_dirs, capsys) -> None:
    truth_dir, pred_dir, _ = ph2_dirs
    assert main(["score", str(truth_dir), str(pred_dir), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert sorted(record["per_image"]) == ["IMD002", "IMD0021", "IMD004"]
    assert record["summary"]["n_images"] == 3


def test_ph2_problems_name_the_rule(ph2_dirs, capsys) -> None:
    truth_dir, pred_dir, _ = ph2_dirs
    (pred_dir / "IMD002_segmentation.png").unlink()
    save(pred_dir / "IMD004.png", lesion(10, 14, 3, 3))  # beside IMD004_lesion.bmp
    assert main(["score", str(truth_dir), str(pred_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pred_dir}: 2 problems, nothing was scored:")
    assert f"{truth_dir / 'IMD002_lesion.bmp'}: no prediction for this ground truth" in err
    assert "a mask named IMD002.png or IMD002_segmentation.png" in err
    assert "several predictions match ground truth IMD004_lesion.bmp: IMD004.png, " in err
    assert "IMD0021" not in err  # IMD0021.png is not a candidate for IMD002


def test_ph2_archive_folder_as_truth(tmp_path: Path, capsys) -> None:
    """Pointing TRUTH_DIR at the PH2 archive (one sub-folder per case) says what to do."""
    root = tmp_path / "PH2 Dataset images"
    for case in ("IMD002", "IMD004"):
        save(root / case / f"{case}_lesion" / f"{case}_lesion.bmp", lesion(6, 6, 2, 2))
        save(tmp_path / "pred" / f"{case}_segmentation.png", lesion(6, 6, 2, 2))
    assert main(["score", str(root), str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'IMD002'}: is a folder, not a mask file" in err
    assert "copy every case's *_lesion.bmp into one folder" in err


def test_own_folder_ids_are_scored(tmp_path: Path) -> None:
    """The loaders' "folder" layout: masks/<stem>.png or <stem>_segmentation.png."""
    truth_dir, pred_dir = tmp_path / "masks", tmp_path / "predictions"
    truth = {"mole 7": lesion(9, 9, 3, 3), "patient-12_left": lesion(7, 11, 1, 5)}
    save(truth_dir / "mole 7.png", truth["mole 7"])
    save(truth_dir / "patient-12_left_segmentation.png", truth["patient-12_left"])
    save(pred_dir / "mole 7_segmentation.png", lesion(9, 9, 4, 3))
    save(pred_dir / "patient-12_left.png", truth["patient-12_left"])
    save(pred_dir / "unrelated.png", lesion(9, 9, 4, 3))  # extra predictions are ignored
    table = metrics.score_dirs(truth_dir, pred_dir)
    assert list(table.index) == ["mole 7", "patient-12_left"]
    assert table.loc["mole 7"].to_dict() == pytest.approx(
        metrics.score_pair(truth["mole 7"], lesion(9, 9, 4, 3))
    )
    assert table.loc["patient-12_left", "jaccard"] == 1.0


def test_own_folder_duplicate_truth_ids(tmp_path: Path) -> None:
    truth_dir, pred_dir = tmp_path / "masks", tmp_path / "pred"
    save(truth_dir / "a.png", lesion(4, 4, 2, 2))
    save(truth_dir / "a_segmentation.png", lesion(4, 4, 1, 1))
    save(pred_dir / "a.png", lesion(4, 4, 2, 2))
    with pytest.raises(DataError) as caught:
        metrics.score_dirs(truth_dir, pred_dir)
    assert caught.value.path == truth_dir / "a_segmentation.png"
    assert "has the image id a of a.png as well" in str(caught.value)
    assert "keep one ground-truth mask per image" in str(caught.value)


def test_mixed_isic_and_own_ids(isic_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = isic_dirs
    save(truth_dir / "extra_case.png", lesion(8, 10, 2, 2))
    save(pred_dir / "extra_case_segmentation.png", lesion(8, 10, 2, 2))
    table = metrics.score_dirs(truth_dir, pred_dir)
    assert list(table.index) == [f"ISIC_{i:07d}" for i in range(1, 6)] + ["extra_case"]
    assert table.loc["extra_case", "jaccard"] == 1.0
    assert table.loc["ISIC_0000001", "jaccard"] == pytest.approx(
        metrics.score_pair(lesion(8, 10, 2, 2), lesion(8, 10, 3, 2))["jaccard"]
    )  # the ISIC ids are still matched by their 7 digits


# --- many files: decoded once each, on several processes ------------------------------------


@pytest.fixture()
def many_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Twelve ISIC pairs: enough for the folders to be scored by worker processes."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    for i in range(12):
        number = f"{i + 1:07d}"
        save(truth_dir / f"ISIC_{number}_segmentation.png", lesion(8, 10, 2, i % 9))
        save(pred_dir / f"ISIC_{number}_segmentation.png", lesion(8, 10, 1 + i % 5, 3))
    return truth_dir, pred_dir


def test_processes_score_like_one(many_dirs: tuple[Path, Path]) -> None:
    serial = metrics.score_dirs_scorer(*many_dirs, workers=1)
    parallel = metrics.score_dirs_scorer(*many_dirs, workers=2)
    pd.testing.assert_frame_equal(parallel.counts(), serial.counts())
    assert list(parallel.per_image().index) == [f"ISIC_{i + 1:07d}" for i in range(12)]
    assert parallel.summary() == serial.summary() == metrics.score_dirs_summary(*many_dirs)


def test_processes_report_the_same_problems(many_dirs: tuple[Path, Path]) -> None:
    truth_dir, pred_dir = many_dirs
    save(pred_dir / "ISIC_0000003_segmentation.png", lesion(9, 10, 2, 2))  # wrong size
    (pred_dir / "ISIC_0000007_segmentation.png").write_bytes(b"not a png")
    (pred_dir / "ISIC_0000011_segmentation.png").unlink()
    messages = []
    for workers in (1, 2):
        with pytest.raises(DataError) as caught:
            metrics.score_dirs_scorer(truth_dir, pred_dir, workers=workers)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"{pred_dir}: 3 problems, nothing was scored")
    lines = messages[0].splitlines()
    assert "ISIC_0000003" in lines[1] and "9x10" not in lines[1] and "10x9" in lines[1]
    assert "ISIC_0000007" in lines[3] and "cannot read the mask image" in lines[3]
    assert "no prediction for this ground truth" in lines[5]


def test_each_mask_file_is_decoded_once(many_dirs: tuple[Path, Path], monkeypatch) -> None:
    opened: list[str] = []
    real = Image.open

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    metrics.score_dirs(*many_dirs, workers=1)
    assert len(opened) == 24 and len(set(opened)) == 12  # one truth, one prediction each


def test_folder_counts_equal_confusion_of_the_arrays(tmp_path: Path) -> None:
    """Folders are counted from the decoded images without copying them into arrays: the
    counts are confusion()'s of the arrays, for every kind of mask binarise reads."""
    rng = np.random.default_rng(0)
    grey = rng.choice(np.array([0, 1, 100, 128, 129, 200, 255], np.uint8), (12, 16))
    masks = {
        "0_255": lesion(12, 16, 4, 5),
        "0_1": lesion(12, 16, 2, 9, value=1),
        "grey": grey,
        "only_128": np.full((12, 16), 128, np.uint8),
        "empty": np.zeros((12, 16), np.uint8),
        "full": np.full((12, 16), 255, np.uint8),
        "ones": np.ones((12, 16), np.uint8),
    }
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    expected = {}
    for i, truth in enumerate(masks.values()):
        for j, pred in enumerate(masks.values()):
            image_id = f"ISIC_{100 * i + j:07d}"
            save(truth_dir / f"{image_id}_segmentation.png", truth)
            save(pred_dir / f"{image_id}_segmentation.png", pred)
            expected[image_id] = metrics.confusion(truth, pred)
    bits = Image.fromarray(lesion(12, 16, 3, 3)).convert("1")  # a 1-bit prediction
    bits.save(pred_dir / "ISIC_0000000_segmentation.png")
    expected["ISIC_0000000"] = metrics.confusion(masks["0_255"], lesion(12, 16, 3, 3))
    counts = metrics.score_dirs_scorer(truth_dir, pred_dir, workers=1).counts()
    assert counts.to_dict(orient="index") == expected
