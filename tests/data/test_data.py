"""lessons_lib.data: layouts, readers, bad input, splits and the prepare cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import write_pair
from PIL import Image

from lessons_lib.data import (
    check_dataset,
    detect_dataset,
    find_pairs,
    prepare,
    read_image,
    read_mask,
    read_pair,
    split_pairs,
)
from lessons_lib.errors import DataError


# --- layouts -------------------------------------------------------------------------------
def test_isic2017_layout_ignores_superpixels_and_csv(isic2017_root: Path) -> None:
    pairs = find_pairs(isic2017_root, "isic2017", "train")
    assert [p[0].name for p in pairs] == [f"ISIC_000000{i}.jpg" for i in range(3)]
    assert all(m.name == f"{i.stem}_segmentation.png" for i, m in pairs)
    assert len(find_pairs(isic2017_root, "isic2017")) == 9
    assert len(find_pairs(isic2017_root, "isic2017", "test")) == 3
    assert detect_dataset(isic2017_root) == "isic2017"


def test_root_may_be_the_folder_holding_the_dataset(isic2017_root: Path) -> None:
    assert len(find_pairs(isic2017_root.parent, "isic2017", "valid")) == 3


def test_isic2016_layout_and_missing_split(tmp_path: Path) -> None:
    for split in ("Training", "Test"):
        write_pair(
            tmp_path / f"ISBI2016_ISIC_Part1_{split}_Data/ISIC_0000001.jpg",
            tmp_path / f"ISBI2016_ISIC_Part1_{split}_GroundTruth/ISIC_0000001_Segmentation.png",
        )
    assert len(find_pairs(tmp_path, "isic2016", "train")) == 1
    with pytest.raises(DataError, match="no 'valid' split"):
        find_pairs(tmp_path, "isic2016", "valid")


def test_isic2018_layout(tmp_path: Path) -> None:
    inp, gt = "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"
    write_pair(tmp_path / inp / "ISIC_0000000.jpg", tmp_path / gt / "ISIC_0000000_segmentation.png")
    (tmp_path / inp / "ATTRIBUTION.txt").write_text("x")
    assert len(find_pairs(tmp_path, "isic2018", "train")) == 1
    assert detect_dataset(tmp_path) == "isic2018"


def test_ph2_layout_and_seeded_split_is_saved(tmp_path: Path) -> None:
    for i in range(1, 11):
        case = tmp_path / "PH2 Dataset images" / f"IMD{i:03d}"
        write_pair(
            case / f"IMD{i:03d}_Dermoscopic_Image" / f"IMD{i:03d}.bmp",
            case / f"IMD{i:03d}_lesion" / f"IMD{i:03d}_lesion.bmp",
        )
    everything = find_pairs(tmp_path, "ph2")
    splits = {s: find_pairs(tmp_path, "ph2", s) for s in ("train", "valid", "test")}
    assert [len(v) for v in splits.values()] == [7, 1, 2]
    assert sorted(p for v in splits.values() for p in v) == sorted(everything)
    saved = tmp_path / "lessons_split_ph2_seed0.json"
    assert json.loads(saved.read_text())["seed"] == 0
    assert find_pairs(tmp_path, "ph2", "test") == splits["test"]  # reread from the file
    find_pairs(tmp_path, "ph2", "test", seed=1)
    assert (tmp_path / "lessons_split_ph2_seed1.json").is_file()
    (tmp_path / "PH2 Dataset images" / "IMD011").mkdir()
    with pytest.raises(DataError, match="PH2 case file is missing"):
        find_pairs(tmp_path, "ph2")


def test_saved_split_that_no_longer_matches_is_an_error(tmp_path: Path) -> None:
    for i in range(6):
        write_pair(tmp_path / "images" / f"a{i}.png", tmp_path / "masks" / f"a{i}.png")
    find_pairs(tmp_path, "folder", "train")
    write_pair(tmp_path / "images" / "new.png", tmp_path / "masks" / "new_segmentation.png")
    with pytest.raises(DataError, match="saved split does not match") as err:
        find_pairs(tmp_path, "folder", "train")
    assert "delete this file" in str(err.value)


def test_folder_layout_accepts_both_mask_names(tmp_path: Path) -> None:
    write_pair(tmp_path / "images/a.jpg", tmp_path / "masks/a_segmentation.png")
    write_pair(tmp_path / "images/b.jpg", tmp_path / "masks/b.png")
    assert [m.name for _, m in find_pairs(tmp_path, "folder")] == ["a_segmentation.png", "b.png"]


def test_split_pairs_is_seeded_and_disjoint(isic2017_root: Path) -> None:
    pairs = find_pairs(isic2017_root, "isic2017")
    train, valid = split_pairs(pairs, 4, seed=3)
    assert len(valid) == 4 and len(train) == 5 and not set(train) & set(valid)
    assert split_pairs(pairs, 4, seed=3) == (train, valid)
    assert len(split_pairs(pairs, 0.34)[1]) == 3
    with pytest.raises(DataError, match="cannot hold out 9 of 9 images"):
        split_pairs(pairs, 9)


# --- layout errors -------------------------------------------------------------------------
def test_unknown_dataset_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="isic2016, isic2017, isic2018, ph2, folder, synthetic"):
        find_pairs(tmp_path, "isic2019")


def test_missing_root_and_unknown_layout(tmp_path: Path, isic2017_root: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        find_pairs(tmp_path / "nope", "isic2017")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no isic2018 layout"):
        find_pairs(tmp_path / "empty", "isic2018")
    with pytest.raises(DataError, match="looks like dataset='isic2017'"):
        find_pairs(isic2017_root, "isic2018")


def test_missing_mask_names_the_image(isic2017_root: Path) -> None:
    gt = isic2017_root / "ISIC-2017_Training_Part1_GroundTruth"
    (gt / "ISIC_0000001_segmentation.png").unlink()
    with pytest.raises(DataError, match="ISIC_0000001.jpg") as err:
        find_pairs(isic2017_root, "isic2017", "train")
    assert "ISIC_0000001_segmentation.png" in str(err.value)


def test_empty_split_and_missing_ground_truth(isic2017_root: Path) -> None:
    data = isic2017_root / "ISIC-2017_Validation_Data"
    for f in data.glob("*.jpg"):
        f.unlink()
    with pytest.raises(DataError, match="no images found"):
        find_pairs(isic2017_root, "isic2017", "valid")
    import shutil

    shutil.rmtree(isic2017_root / "ISIC-2017_Test_v2_Part1_GroundTruth")
    with pytest.raises(DataError, match="ground-truth folder is missing"):
        find_pairs(isic2017_root, "isic2017", "test")


# --- readers and bad files -----------------------------------------------------------------
def _mask(tmp_path: Path, arr: np.ndarray, mode: str | None = None, name: str = "m.png") -> Path:
    path = tmp_path / name
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def test_masks_binarised_like_the_isic_scorer(tmp_path: Path) -> None:
    grey = np.array([[0, 128, 129, 255]], np.uint8)
    assert read_mask(_mask(tmp_path, grey)).tolist() == [[False, False, True, True]]
    zero_one = np.array([[0, 1, 1, 0]], np.uint8)
    assert read_mask(_mask(tmp_path, zero_one)).tolist() == [[False, True, True, False]]


def test_rgb_mask_with_equal_channels_is_handled(tmp_path: Path) -> None:
    m = np.zeros((4, 4, 3), np.uint8)
    m[1:3, 1:3] = 255
    assert read_mask(_mask(tmp_path, m)).sum() == 4
    rgba = np.dstack([m, np.full((4, 4), 255, np.uint8)])
    assert read_mask(_mask(tmp_path, rgba, name="a.png")).sum() == 4


def test_colour_mask_is_an_error(tmp_path: Path) -> None:
    m = np.zeros((4, 4, 3), np.uint8)
    m[1, 1] = (255, 0, 0)
    with pytest.raises(DataError, match="differing channels") as err:
        read_mask(_mask(tmp_path, m))
    assert "m.png" in str(err.value) and "8-bit greyscale PNG" in str(err.value)


def test_16_bit_masks(tmp_path: Path) -> None:
    binary = np.array([[0, 65535], [65535, 0]], np.uint16)
    assert read_mask(_mask(tmp_path, binary, name="b.png")).sum() == 2
    grey = np.array([[0, 300], [65535, 7]], np.uint16)
    with pytest.raises(DataError, match="not binary"):
        read_mask(_mask(tmp_path, grey, name="g.png"))


def test_truncated_jpeg_names_file(tmp_path: Path) -> None:
    write_pair(tmp_path / "a.jpg", tmp_path / "a.png", 200, 150)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        read_image(tmp_path / "a.jpg")
    assert "a.jpg" in str(err.value) and "re-download" in str(err.value)


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("hello")
    with pytest.raises(DataError, match="not a readable image"):
        read_image(tmp_path / "x.jpg")


def test_greyscale_image_becomes_rgb_and_cmyk_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 5), 100, np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (3, 5, 3)
    Image.new("CMYK", (5, 3)).save(tmp_path / "c.jpg")
    with pytest.raises(DataError, match="CMYK") as err:
        read_image(tmp_path / "c.jpg")
    assert "sRGB" in str(err.value)


def test_mask_of_wrong_size_names_both_files(tmp_path: Path) -> None:
    write_pair(tmp_path / "a.jpg", tmp_path / "a.png", 40, 30)
    write_pair(tmp_path / "b.jpg", tmp_path / "b.png", 41, 30)
    with pytest.raises(DataError, match="41x30 but its image is 40x30") as err:
        read_pair(tmp_path / "a.jpg", tmp_path / "b.png")
    assert "a.jpg" in str(err.value) and "b.png" in str(err.value)


def _exif_jpeg(path: Path, w: int, h: int, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path, exif=exif.tobytes())


def test_exif_rotation_applied_only_when_the_mask_matches_it(tmp_path: Path) -> None:
    _exif_jpeg(tmp_path / "r.jpg", 40, 30, orientation=6)
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "rot.png")  # 30 wide
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "raw.png")
    image, mask = read_pair(tmp_path / "r.jpg", tmp_path / "rot.png")
    assert image.shape == (40, 30, 3) == mask.shape + (3,)
    image, _ = read_pair(tmp_path / "r.jpg", tmp_path / "raw.png")
    assert image.shape == (30, 40, 3)


def test_decompression_bomb_is_refused_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    write_pair(tmp_path / "a.jpg", tmp_path / "a.png", 40, 30)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(DataError, match="decompression-bomb") as err:
        read_image(tmp_path / "a.jpg")
    assert "MAX_IMAGE_PIXELS" in str(err.value)


# --- check ---------------------------------------------------------------------------------
def test_check_reports_every_problem_in_one_pass(isic2017_root: Path) -> None:
    train = isic2017_root / "ISIC-2017_Training_Data"
    gt = isic2017_root / "ISIC-2017_Training_Part1_GroundTruth"
    (gt / "ISIC_0000000_segmentation.png").unlink()  # missing mask
    (train / "ISIC_0000001.jpg").write_bytes(b"garbage")  # corrupt image
    write_pair(train / "ISIC_0000002.jpg", isic2017_root / "x.png", 20, 10)  # wrong size
    write_pair(isic2017_root / "y.jpg", gt / "ISIC_0099999_segmentation.png")  # orphan mask
    n, problems = check_dataset(isic2017_root, "isic2017", workers=1)
    text = "\n".join(problems)
    assert n == 8 and len(problems) == 4, text
    for needle in ("ISIC_0000000.jpg", "ISIC_0000001.jpg", "ISIC_0000002", "ISIC_0099999"):
        assert needle in text


def test_check_clean_dataset(isic2017_root: Path) -> None:
    assert check_dataset(isic2017_root, "isic2017", workers=2) == (9, [])


# --- prepare -------------------------------------------------------------------------------
def test_prepare_resizes_once_and_keeps_originals(isic2017_root: Path, tmp_path: Path) -> None:
    for image, mask in find_pairs(isic2017_root, "isic2017"):
        write_pair(image, mask, 200, 150, seed=len(image.stem))
    prep = prepare(isic2017_root, "isic2017", size=60, out=tmp_path / "p", workers=2)
    entry = prep.entries("train")[0]
    assert entry["orig_size"] == [200, 150] and entry["size"] == [80, 60]
    img, msk = prep.pairs("train")[0]
    assert Image.open(img).size == (80, 60) and set(np.unique(np.asarray(Image.open(msk)))) <= {
        0,
        255,
    }
    assert prep.originals("test")[0][0].parent.name == "ISIC-2017_Test_v2_Data"
    mtime = os.path.getmtime(img)
    again = prepare(isic2017_root, "isic2017", size=60, out=tmp_path / "p")
    assert os.path.getmtime(img) == mtime and again.manifest == prep.manifest
    with pytest.raises(DataError, match="already holds"):
        prepare(isic2017_root, "isic2017", size=30, out=tmp_path / "p")
    only_test = prepare(isic2017_root, "isic2017", size=60, out=tmp_path / "p", splits=("test",))
    assert only_test.manifest == prepare(isic2017_root, "isic2017", 60, out=tmp_path / "p").manifest


# --- real samples --------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(
    "folder,dataset,n",
    [
        ("isic2017-test-sample", "isic2017", 9),
        ("ph2-sample", "ph2", 20),
        ("ham10000-sample", "folder", 41),
    ],
)
def test_real_samples_read_cleanly(samples: Path, folder: str, dataset: str, n: int) -> None:
    root = samples / folder
    assert detect_dataset(root) == dataset
    pairs = find_pairs(root, dataset)
    assert len(pairs) == n
    image, mask = read_pair(*pairs[0])
    assert image.dtype == np.uint8 and image.shape[:2] == mask.shape and mask.any()


@pytest.mark.realdata
def test_real_isic2017_prepare_and_check(samples: Path, tmp_path: Path) -> None:
    root = samples / "isic2017-test-sample"
    assert check_dataset(root, "isic2017") == (9, [])
    prep = prepare(root, "isic2017", size=128, out=tmp_path / "p", splits=("test",))
    assert len(prep.entries("test")) == 9  # the loop below checks every image
    for e in prep.entries("test"):
        assert min(e["size"]) == 128 and min(e["orig_size"]) >= 1936
        ratio = e["size"][0] / e["size"][1]
        assert abs(ratio - e["orig_size"][0] / e["orig_size"][1]) < 0.02
        small = np.asarray(Image.open(prep.path / e["mask"])) > 127
        full = read_mask(e["orig_mask"])
        assert abs(small.mean() - full.mean()) < 0.02  # the lesion's area fraction survives
