"""lessons_lib.data.check: ``data check`` reports every problem in one pass, for every layout.

Each test makes a user's mistake (a damaged download, a tiny dataset, the wrong ``--root`` or
``--split``) and checks the report or message, and that ``data check`` wrote nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_pair

from lessons_lib.cli import main
from lessons_lib.data import check_dataset, find_pairs, prepare
from lessons_lib.data.split import min_images, split_sizes
from lessons_lib.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    """A private ``LESSONS_CACHE``, so that a split saved there would be seen."""
    path = tmp_path / "cache"
    monkeypatch.setenv("LESSONS_CACHE", str(path))
    return path


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        write_pair(root / "images" / f"im{i:02d}.jpg", root / "masks" / f"im{i:02d}.png", seed=i)
    return root


def _ph2(root: Path, n: int) -> Path:
    for i in range(1, n + 1):
        case = root / "PH2 Dataset images" / f"IMD{i:03d}"
        write_pair(
            case / f"IMD{i:03d}_Dermoscopic_Image" / f"IMD{i:03d}.bmp",
            case / f"IMD{i:03d}_lesion" / f"IMD{i:03d}_lesion.bmp",
            seed=i,
        )
    return root


def _check(capsys, *args: str) -> tuple[int, str]:
    code = main(["data", "check", "--workers", "1", *args])
    return code, capsys.readouterr().out


def _written(root: Path, cache: Path) -> list[Path]:
    """Split files ``data check`` must not write, beside the data or in the cache."""
    return sorted(root.rglob("lessons_split_*")) + sorted(cache.rglob("*split*"))


def _dangle(path: Path) -> Path:
    """Replace ``path`` by a symbolic link to a file that does not exist."""
    path.unlink(missing_ok=True)
    target = path.parent / "moved-away" / path.name
    os.symlink(target, path)
    return target


# --- every problem at once, every file once, whatever the splits -------------------------
def test_folder_layout_reports_every_problem_once(tmp_path: Path, cache: Path, capsys) -> None:
    root = _folder(tmp_path / "mine", 10)
    (root / "masks" / "im00.png").unlink()  # missing mask: today it hid everything else
    (root / "images" / "im01.jpg").write_bytes(b"not a jpeg")  # corrupt image
    write_pair(tmp_path / "x.jpg", root / "masks" / "stray.png")  # orphan mask
    image_target = _dangle(root / "images" / "im02.jpg")  # today skipped silently
    mask_target = _dangle(root / "masks" / "im03.png")  # today "no mask"
    code, out = _check(capsys, "--dataset", "folder", "--root", str(root))
    assert code == 1
    assert "checked 7 image/mask pairs: 5 problem(s)" in out, out
    assert out.count("PROBLEM") == 5
    assert "im00.jpg: no mask (im00_segmentation.png, im00.png)" in out
    assert "im01.jpg: not a readable image" in out
    assert out.count("stray.png: mask has no image") == 1  # once, not once per split
    assert out.count("broken symbolic link") == 2
    assert f"im02.jpg: broken symbolic link: it points to {image_target}," in out
    assert f"im03.png: broken symbolic link: it points to {mask_target}," in out
    assert "restore the file it points to" in out
    assert _written(root, cache) == []


def test_ph2_layout_reports_every_problem(tmp_path: Path, cache: Path, capsys) -> None:
    root = _ph2(tmp_path / "ph2", 8)
    cases = root / "PH2 Dataset images"
    (cases / "IMD001" / "IMD001_lesion" / "IMD001_lesion.bmp").unlink()
    (cases / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp").write_bytes(b"BM broken")
    _dangle(cases / "IMD003" / "IMD003_Dermoscopic_Image" / "IMD003.bmp")
    write_pair(
        cases / "IMD004" / "IMD004_Dermoscopic_Image" / "IMD004.bmp",
        cases / "IMD004" / "IMD004_lesion" / "IMD004_lesion.bmp",
        w=41,
    )
    (cases / "IMD004" / "IMD004_lesion" / "IMD004_lesion.bmp").unlink()
    write_pair(tmp_path / "a.bmp", cases / "IMD004" / "IMD004_lesion" / "IMD004_lesion.bmp")
    code, out = _check(capsys, "--dataset", "ph2", "--root", str(root))
    assert code == 1
    assert "checked 6 image/mask pairs: 4 problem(s)" in out, out
    assert "IMD001_lesion.bmp: PH2 case file is missing" in out
    assert "IMD002.bmp: not a readable image" in out
    assert "IMD003.bmp: broken symbolic link" in out
    assert "IMD004.bmp" in out and "is 40x30 but its image is 41x30" in out
    assert _written(root, cache) == []


def test_tiny_folder_is_checked_whole(tmp_path: Path, cache: Path, capsys) -> None:
    """Today an empty validation split stopped the check before the test split's files."""
    root = _folder(tmp_path / "tiny", 4)
    (root / "images" / "im03.jpg").write_bytes(b"garbage")
    for split in (None, "train", "valid", "test"):  # --split cannot hide files never split
        args = ["--split", split] if split else []
        code, out = _check(capsys, "--dataset", "folder", "--root", str(root), *args)
        assert code == 1 and "checked 4 image/mask pairs: 1 problem(s)" in out, out
        assert "im03.jpg: not a readable image" in out
    assert _written(root, cache) == []


def test_isic_empty_split_does_not_stop_the_others(isic2017_root: Path, capsys) -> None:
    for image in (isic2017_root / "ISIC-2017_Validation_Data").glob("*.jpg"):
        image.unlink()
    test_images = isic2017_root / "ISIC-2017_Test_v2_Data"
    (test_images / "ISIC_0000008.jpg").write_bytes(b"garbage")
    _dangle(isic2017_root / "ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png")
    code, out = _check(capsys, "--dataset", "isic2017", "--root", str(isic2017_root))
    assert code == 1
    assert "ISIC-2017_Validation_Data: no images found" in out
    assert "ISIC_0000008.jpg: not a readable image" in out
    assert "ISIC_0000000_segmentation.png: broken symbolic link" in out
    # the validation masks are now masks without images: each is named once
    assert out.count("mask has no image") == 3


def test_isic_ground_truth_without_its_images(isic2017_root: Path, capsys) -> None:
    shutil.rmtree(isic2017_root / "ISIC-2017_Validation_Data")
    code, out = _check(capsys, "--dataset", "isic2017", "--root", str(isic2017_root))
    assert code == 1 and "checked 6 image/mask pairs: 1 problem(s)" in out, out
    assert "ISIC-2017_Validation_Part1_GroundTruth: ground truth of the 'valid' split" in out
    assert "ISIC-2017_Validation_Data is missing" in out


# --- broken links in the loaders --------------------------------------------------------------
def test_loader_names_a_dangling_image_instead_of_skipping_it(isic2017_root: Path) -> None:
    image = isic2017_root / "ISIC-2017_Training_Data" / "ISIC_0000001.jpg"
    _dangle(image)
    with pytest.raises(DataError, match="broken symbolic link") as err:
        find_pairs(isic2017_root, "isic2017", "train")
    assert str(image) in str(err.value)
    assert len(find_pairs(isic2017_root, "isic2017", "test")) == 3  # other splits unaffected


def test_loader_names_a_dangling_mask(tmp_path: Path) -> None:
    root = _folder(tmp_path / "mine", 6)
    _dangle(root / "masks" / "im04.png")
    with pytest.raises(DataError, match="im04.png: broken symbolic link"):
        find_pairs(root, "folder")


def test_root_that_is_a_dangling_link(tmp_path: Path, capsys) -> None:
    os.symlink(tmp_path / "unmounted", tmp_path / "data")
    code, out = _check(capsys, "--dataset", "isic2017", "--root", str(tmp_path / "data"))
    assert code == 1 and "broken symbolic link" in out and "unmounted" in out


# --- no split file from data check; splits drawn from the files that passed -------------------
def test_removing_a_broken_image_as_told_then_prepare_works(
    tmp_path: Path, cache: Path, capsys
) -> None:
    root = _folder(tmp_path / "mine", 12)
    bad = root / "images" / "im05.jpg"
    bad.write_bytes(b"garbage")
    code, out = _check(capsys, "--dataset", "folder", "--root", str(root))
    assert code == 1 and "im05.jpg: not a readable image" in out
    assert _written(root, cache) == []  # today a split naming im05 was saved here
    bad.unlink()
    (root / "masks" / "im05.png").unlink()
    assert _check(capsys, "--dataset", "folder", "--root", str(root))[0] == 0
    args = ["data", "prepare", "--dataset", "folder", "--root", str(root), "--size", "16"]
    assert main([*args, "--out", str(tmp_path / "p"), "--workers", "1"]) == 0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert len(manifest["entries"]) == 11 and "im05" not in {e["id"] for e in manifest["entries"]}
    saved = json.loads((root / "lessons_split_folder_seed0.json").read_text())["splits"]
    assert sorted(i for ids in saved.values() for i in ids) == sorted(
        e["id"] for e in manifest["entries"]
    )


def test_image_removed_after_the_split_was_saved_keeps_the_others(tmp_path: Path) -> None:
    """``prepare`` met the broken image first (and saved the split); the user removes it."""
    root = _folder(tmp_path / "mine", 12)
    bad = root / "images" / "im07.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="im07.jpg"):
        prepare(root, "folder", 16, out=tmp_path / "p", workers=1)
    before = {s: find_pairs(root, "folder", s) for s in ("train", "valid", "test")}
    bad.unlink()
    with pytest.warns(UserWarning, match=r"1 image\(s\) of the saved split are gone.*im07"):
        prep = prepare(root, "folder", 16, out=tmp_path / "p", workers=1)
    for split, pairs in before.items():  # every other image stays in its split
        kept = [p for p in pairs if p[0] != bad]
        assert [e["id"] for e in prep.entries(split)] == [p[0].stem for p in kept]


def test_new_image_after_the_split_was_saved_is_still_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "mine", 8)
    find_pairs(root, "folder", "train")
    write_pair(root / "images" / "zz.jpg", root / "masks" / "zz.png")
    with pytest.raises(DataError, match=r"1 new image\(s\) \['zz'\]") as err:
        find_pairs(root, "folder", "train")
    assert "lessons_split_folder_seed0.json" in str(err.value) and "delete this file" in str(
        err.value
    )


def test_unreadable_saved_split_names_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "mine", 8)
    (root / "lessons_split_folder_seed0.json").write_text("{ half-writ")
    with pytest.raises(DataError, match="saved split is unreadable") as err:
        find_pairs(root, "folder", "test")
    assert "lessons_split_folder_seed0.json" in str(err.value)


def test_tiny_dataset_says_how_many_images_a_split_needs(tmp_path: Path, cache: Path) -> None:
    root = _folder(tmp_path / "tiny", 4)
    assert len(find_pairs(root, "folder", "train")) == 3
    with pytest.raises(DataError, match="the 'valid' split is empty") as err:
        find_pairs(root, "folder", "valid")
    text = str(err.value)
    assert "has 4 image/mask pair(s)" in text and "needs at least 6" in text
    assert "add images (at least 6 in all)" in text and "split_pairs" in text
    assert _written(root, cache) == []  # a split with an empty part is not saved
    for i in (4, 5):  # the fix as told: no stale split file gets in the way
        write_pair(root / "images" / f"im{i:02d}.jpg", root / "masks" / f"im{i:02d}.png")
    assert len(find_pairs(root, "folder", "valid")) == 1
    assert (root / "lessons_split_folder_seed0.json").is_file()


def test_split_minimums_match_the_draw() -> None:
    for split in ("train", "valid", "test"):
        need = min_images(split)
        assert split_sizes(need)[split] > 0 and split_sizes(need - 1)[split] == 0
        assert all(sum(split_sizes(n).values()) == n for n in range(1, 50))


# --- messages that name the real cause ----------------------------------------------------------
def test_absent_split_is_named_as_absent(isic2017_root: Path, capsys) -> None:
    for split in ("Training", "Validation"):
        shutil.rmtree(isic2017_root / f"ISIC-2017_{split}_Data")
        shutil.rmtree(isic2017_root / f"ISIC-2017_{split}_Part1_GroundTruth")
    args = ("--dataset", "isic2017", "--root", str(isic2017_root), "--split", "train")
    code, out = _check(capsys, *args)
    assert code == 1 and out.count("PROBLEM") == 1
    assert "the 'train' split of ISIC 2017 Task 1 is absent" in out
    assert "no folder ISIC-2017_Training_Data here (splits present: test)" in out
    assert "pass that instead" not in out and "dataset='isic2017'" not in out
    assert _check(capsys, *args[:-1], "test")[0] == 0
    with pytest.raises(DataError, match="'valid' split of ISIC 2017 Task 1 is absent"):
        find_pairs(isic2017_root, "isic2017", "valid")


def test_file_given_as_root(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "ISIC-2017_Training_Data.zip"
    archive.write_bytes(b"PK\x03\x04")
    code, out = _check(capsys, "--dataset", "isic2017", "--root", str(archive))
    assert code == 1 and "dataset root is a file, not a folder" in out
    assert "unzip ISIC-2017_Training_Data.zip" in out and "does not exist" not in out
    image = tmp_path / "a.jpg"
    write_pair(image, tmp_path / "a.png")
    with pytest.raises(DataError, match="a.jpg: dataset root is a file") as err:
        find_pairs(image, "folder", "train")
    assert "not a file in it" in str(err.value)
    args = ["data", "prepare", "--dataset", "ph2", "--root", str(image), "--size", "16"]
    assert main([*args, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "a.jpg: dataset root is a file, not a folder" in err
    assert not (tmp_path / "p" / "manifest.json").exists()


def test_cli_prints_no_traceback_for_a_file_root(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "lessons_lib", "data", "check", "--dataset", "folder"]
        + ["--root", str(tmp_path / "notes.txt")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "notes.txt: dataset root is a file, not a folder" in proc.stdout


def test_check_api_returns_every_problem(tmp_path: Path) -> None:
    root = _folder(tmp_path / "mine", 10)
    (root / "masks" / "im00.png").unlink()
    (root / "masks" / "im09.png").unlink()
    n, problems = check_dataset(root, "folder", workers=2)
    assert n == 8 and len(problems) == 2
    assert "im00.jpg" in problems[0] and "im09.jpg" in problems[1]
