"""lessons_lib.data.cache and ``python -m lessons_lib data cache``: the listing names every
prepared and synthetic dataset with its size, and ``--remove-unused`` deletes exactly the prepared
folders no run reads again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import write_pair

from lessons_lib import cli
from lessons_lib.data import prepare
from lessons_lib.data.cache import remove_unused, scan_cache
from lessons_lib.data.prepare import PreparedData


def _folder_dataset(root: Path, n: int = 10) -> Path:
    for i in range(n):
        write_pair(root / "images" / f"a{i:02d}.png", root / "masks" / f"a{i:02d}.png", seed=i)
    return root


def test_the_cache_lists_its_datasets_and_removes_only_what_no_run_reads(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LESSONS_CACHE", str(cache))
    kept_root = _folder_dataset(tmp_path / "own")
    used = prepare(kept_root, "folder", size=20, workers=1, seed=1)
    dry = prepare(kept_root, "folder", size=24, workers=1, seed=1, limit=2)
    # PH2 or a folder prepared before each seed had a folder of its own (no "-seed1")
    old = prepare(kept_root, "folder", size=16, workers=1, seed=1)
    old_name = old.path.with_name(old.path.name.removesuffix("-seed1"))
    old.path.rename(old_name)
    gone_root = _folder_dataset(tmp_path / "deleted-download")
    gone = prepare(gone_root, "folder", size=20, workers=1, seed=0)
    shutil.rmtree(gone_root)
    mine = prepare(kept_root, "folder", size=20, workers=1, seed=2, out=cache / "prepared" / "mine")
    unfinished = cache / "prepared" / "folder-0123456789-32-seed0"  # no manifest.json yet
    (unfinished / "train" / "images").mkdir(parents=True)
    (unfinished / "train" / "images" / "a00.jpg").write_bytes(b"half")
    (cache / "synthetic" / "n4-seed0").mkdir(parents=True)
    cut_short = cache / "prepared" / ".folder-0123456789-48-seed0.removing"  # a removal killed
    shutil.copytree(used.path, cut_short)

    folders = {f.path.name: f for f in scan_cache()}
    assert set(folders) == {
        used.path.name,
        dry.path.name,
        old_name.name,
        gone.path.name,
        "mine",
        unfinished.name,
        "n4-seed0",
        cut_short.name,
    }
    unused = {name for name, f in folders.items() if f.unused}
    assert unused == {old_name.name, gone.path.name, cut_short.name}
    assert "earlier version" in folders[old_name.name].unused
    assert old.path.name in folders[old_name.name].unused  # the folder runs now use
    assert folders[gone.path.name].unused == "its dataset folder is gone"
    assert folders[used.path.name].n_bytes == sum(
        p.stat().st_size for p in used.path.rglob("*") if p.is_file()
    )
    assert "split with seed 1" in folders[used.path.name].about
    assert "the first 2 images of each split" in folders[dry.path.name].about
    assert "unfinished" in folders[unfinished.name].about

    assert cli.main(["data", "cache"]) == 0
    listing = capsys.readouterr().out
    assert f"cache: {cache}" in listing and "in 8 folders" in listing
    assert sum("UNUSED" in line for line in listing.splitlines()) == 3
    assert "3 prepared folder(s)" in listing and "--remove-unused" in listing

    assert cli.main(["data", "cache", "--remove-unused"]) == 0
    out = capsys.readouterr().out
    assert "removed 3 unused prepared folder(s)" in out
    assert not old_name.exists() and not gone.path.exists() and not cut_short.exists()
    for kept in (used.path, dry.path, mine.path, unfinished, cache / "synthetic" / "n4-seed0"):
        assert kept.is_dir(), kept
    assert not list((cache / "prepared").glob(".*")), "a hidden folder left behind"
    again = prepare(kept_root, "folder", size=20, workers=1, seed=1)
    assert again.path == used.path and again.manifest == PreparedData.load(used.path).manifest
    assert remove_unused(scan_cache()) == []  # nothing left to remove
    assert cli.main(["data", "cache"]) == 0
    assert "UNUSED" not in capsys.readouterr().out


def test_an_empty_or_missing_cache_lists_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "never-made"))
    assert scan_cache() == []
    assert cli.main(["data", "cache", "--remove-unused"]) == 0
    assert "removed 0 unused prepared folder(s)" in capsys.readouterr().out
    assert not (tmp_path / "never-made").exists()  # listing makes no folder


@pytest.mark.parametrize("manifest", ["{", '{"dataset": "folder"}'])
def test_a_broken_manifest_is_listed_never_removed(
    tmp_path: Path, monkeypatch, manifest: str
) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path))
    folder = tmp_path / "prepared" / "folder-0123456789-20"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(manifest)
    (found,) = scan_cache()
    assert found.unused is None and "unreadable manifest.json" in found.about
    assert remove_unused([found]) == [] and folder.is_dir()
