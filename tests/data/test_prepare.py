"""lessons_lib.data.prepare: the cache follows its sources, refuses bad sizes and unwritable
folders with one clear message, cleans what killed runs left, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import errno
import fcntl
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_pair
from PIL import Image

from lessons_lib import cli
from lessons_lib.atomic import STALE_AFTER, WriteError, clean_temp_files, is_temp_name, write_text
from lessons_lib.data import find_pairs, prepare
from lessons_lib.data.prepare import MANIFEST, PreparedData, shrink_mask
from lessons_lib.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m lessons_lib ...`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "lessons_lib", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def unwritable(tmp_path: Path):
    """A folder path that cannot be made: under a read-only folder or, where chmod does not
    stop writes (tests run as root), under a regular file (mkdir: "Not a directory")."""
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").mkdir()
    except PermissionError:
        yield locked / "cache"
        locked.chmod(0o700)
        return
    (locked / "probe").rmdir()
    locked.chmod(0o700)
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, not a folder\n")
    yield blocker / "cache"


def _entry(prep: PreparedData, split: str, image_id: str) -> dict:
    return next(e for e in prep.entries(split) if e["id"] == image_id)


# --- the cache follows its sources ---------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_replaced_mask_is_prepared_again(isic2017_root: Path, tmp_path: Path, workers: int):
    out = tmp_path / "p"
    prep = prepare(isic2017_root, "isic2017", size=20, out=out, workers=workers)
    image, mask = find_pairs(isic2017_root, "isic2017", "train")[0]
    entry = _entry(prep, "train", image.stem)
    other = _entry(prep, "train", find_pairs(isic2017_root, "isic2017", "train")[1][0].stem)
    before = np.asarray(Image.open(out / entry["mask"])) > 127
    untouched = os.stat(out / other["mask"]).st_mtime_ns
    assert before.any()

    new = np.zeros((30, 40), np.uint8)  # the same name, another lesion: a bar on the left
    new[:, :12] = 255
    Image.fromarray(new).save(mask)
    again = prepare(isic2017_root, "isic2017", size=20, out=out, workers=workers)

    entry = _entry(again, "train", image.stem)
    assert entry["orig_mask"] == str(mask)
    cached = np.asarray(Image.open(out / entry["mask"])) > 127
    expected = shrink_mask(Image.open(entry["orig_mask"]).convert("L"), tuple(entry["size"]))
    assert np.array_equal(cached, expected) and not np.array_equal(cached, before)
    assert os.stat(out / other["mask"]).st_mtime_ns == untouched  # the rest is reused


def test_replaced_image_of_another_size_is_prepared_again(isic2017_root: Path, tmp_path: Path):
    out = tmp_path / "p"
    prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    image, mask = find_pairs(isic2017_root, "isic2017", "valid")[0]
    write_pair(image, mask, w=80, h=40, seed=99)
    entry = _entry(prepare(isic2017_root, "isic2017", 20, out=out, workers=1), "valid", image.stem)
    assert entry["orig_size"] == [80, 40] and entry["size"] == [40, 20]
    assert Image.open(out / entry["image"]).size == (40, 20)


def test_pairs_gone_from_the_dataset_are_dropped(isic2017_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    prep = prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    image, mask = find_pairs(isic2017_root, "isic2017", "test")[0]
    gone = _entry(prep, "test", image.stem)
    image.unlink()
    mask.unlink()
    again = prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    assert image.stem not in {e["id"] for e in again.entries()}
    assert not (out / gone["image"]).exists() and not (out / gone["mask"]).exists()
    assert len(again.entries()) == 8 and all((out / e["mask"]).is_file() for e in again.entries())


def test_interrupted_run_resumes_and_old_caches_are_prepared_again(
    isic2017_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p"
    prep = prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    (out / MANIFEST).unlink()  # killed before the manifest was written: the files are kept
    first, second = prep.entries("train")[:2]
    done = os.stat(out / first["mask"]).st_mtime_ns
    Image.open(out / second["mask"]).save(out / second["mask"])  # no source stamp (older cache)
    stale = os.stat(out / second["mask"]).st_mtime_ns
    time.sleep(0.01)
    again = prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    assert again.manifest == prep.manifest
    assert os.stat(out / first["mask"]).st_mtime_ns == done
    assert os.stat(out / second["mask"]).st_mtime_ns != stale


# --- sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size,error,shown", [(0, ValueError, "got 0"), (-8, ValueError, "got -8"),
                         (12.5, TypeError, "got 12.5 (float)"), (True, TypeError, "(bool)")]
)  # fmt: skip
def test_size_must_be_a_positive_whole_number(
    isic2017_root: Path, tmp_path: Path, size, error, shown
) -> None:
    with pytest.raises(error, match="size must be a whole number of pixels") as err:
        prepare(isic2017_root, "isic2017", size=size, out=tmp_path / "p")
    assert shown in str(err.value) and ">= 1" in str(err.value)
    assert not (tmp_path / "p").exists()


def test_workers_must_be_a_positive_whole_number(isic2017_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be .* >= 1, got 0"):
        prepare(isic2017_root, "isic2017", size=20, out=tmp_path / "p", workers=0)


@pytest.mark.parametrize("size", ["0", "-3", "ten"])
def test_cli_refuses_a_size_below_one(isic2017_root: Path, tmp_path: Path, size: str) -> None:
    out = tmp_path / "p"
    args = ["data", "prepare", "--dataset", "isic2017", "--root", str(isic2017_root)]
    proc = _cli(*args, "--size", size, "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"argument --size: expected a whole number >= 1, got {size}" in proc.stderr.replace(
        "'", ""
    )
    assert not out.exists()


# --- read-only or full cache ----------------------------------------------------------------
def test_unwritable_cache_names_lessons_cache(
    isic2017_root: Path, unwritable: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(unwritable))
    with pytest.raises(WriteError) as err:
        prepare(isic2017_root, "isic2017", size=20, workers=1)
    text = str(err.value)
    assert isinstance(err.value, DataError) and str(unwritable) in text
    assert "cannot write the prepared dataset" in text
    assert (
        f"set LESSONS_CACHE to a writable folder with free space (it is now {unwritable})" in text
    )
    assert "--out" in text and not unwritable.exists()


def test_cli_unwritable_cache_and_out_are_one_line_errors(
    isic2017_root: Path, unwritable: Path, tmp_path: Path
) -> None:
    args = ["data", "prepare", "--dataset", "isic2017", "--root", str(isic2017_root)]
    proc = _cli(*args, "--size", "20", env={"LESSONS_CACHE": str(unwritable)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {unwritable}: cannot write the prepared dataset here")
    assert "LESSONS_CACHE" in proc.stderr and "--out" in proc.stderr

    proc = _cli(*args, "--size", "20", "--out", str(unwritable / "p"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and str(unwritable) in proc.stderr
    assert "as out (--out on the command line)" in proc.stderr
    assert not unwritable.exists()


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the error comes from a worker process
def test_full_disk_names_the_folder_and_leaves_nothing_half_written(
    isic2017_root: Path, tmp_path: Path, monkeypatch, capsys, workers: str
) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "cache"))

    def full(self, fp, *args, **kwargs):  # the disk fills up while the first JPEG is written
        Path(fp).write_bytes(b"\xff\xd8 half a JPEG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    args = ["data", "prepare", "--dataset", "isic2017", "--root", str(isic2017_root)]
    assert cli.main([*args, "--size", "20", "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err
    assert "LESSONS_CACHE" in err and "--out" in err
    prepared = tmp_path / "cache" / "prepared"
    files = [p for p in prepared.rglob("*") if p.is_file()]
    assert files == []  # no temporary file, no half JPEG, no manifest


def test_data_check_writes_nothing_to_an_unwritable_cache(
    tmp_path: Path, unwritable: Path, monkeypatch, capsys
) -> None:
    root = tmp_path / "ph2"
    for i in range(4):
        name = f"IMD{i:03d}"
        base = root / "PH2 Dataset images" / name
        write_pair(
            base / f"{name}_Dermoscopic_Image" / f"{name}.bmp",
            base / f"{name}_lesion" / f"{name}_lesion.bmp",
            seed=i,
        )
    monkeypatch.setenv("LESSONS_CACHE", str(unwritable))
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # the data folder is read-only too
    code = cli.main(["data", "check", "--dataset", "ph2", "--root", str(root), "--workers", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and "checked 4 image/mask pairs: 0 problem(s)" in out, out + err
    assert not unwritable.exists()


# --- what killed runs leave behind ---------------------------------------------------------
def test_prepare_removes_temporary_files_of_killed_runs(isic2017_root: Path, tmp_path: Path):
    out = tmp_path / "p"
    prep = prepare(isic2017_root, "isic2017", size=20, out=out, workers=1)
    entry = prep.entries("train")[0]
    cached = out / entry["mask"]
    cached.unlink()  # killed while writing this mask: only its temporary file is there
    left = [
        cached.parent / f".{cached.name}.k1ll3d_0.png",  # zero bytes
        out / entry["image"].replace("images/", "images/.").replace(".jpg", ".jpg.abcd1234.jpg"),
        out / ".manifest.json.x9y8z7w6.json",
    ]
    left[0].write_bytes(b"")
    left[1].write_bytes(b"\xff\xd8 partial")
    left[2].write_text('{"dataset": ')
    for path in left:
        _age(path, 2 * STALE_AFTER)
    young = out / "test" / "masks" / f".{entry['id']}.png.y0ung123.png"  # a live writer's
    young.write_bytes(b"")
    mine = [out / ".notes.txt", out / "train" / "readme.md.abcdefgh"]  # not the writer's
    for path in mine:
        path.write_text("keep me")
        _age(path, 2 * STALE_AFTER)

    again = prepare(isic2017_root, "isic2017", size=20, out=out, workers=2)
    assert not any(p.exists() for p in left)
    assert young.exists() and all(p.exists() for p in mine)
    assert again.manifest == prep.manifest and len(again.entries()) == 9
    for e in again.entries():
        assert Image.open(out / e["image"]).size == tuple(e["size"])
        assert Image.open(out / e["mask"]).size == tuple(e["size"])


def test_a_sigkilled_writer_s_temporary_file_is_removed_but_a_live_one_is_kept(tmp_path: Path):
    code = textwrap.dedent(
        """
        import sys, time
        from lessons_lib.atomic import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_bytes(b"half")
            print(tmp, flush=True)
            time.sleep(120)
        """
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "run" / "model.pth")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        tmp = Path(writer.stdout.readline().strip())
        assert is_temp_name(tmp.name) and tmp.is_file()
        _age(tmp, 2 * STALE_AFTER)
        assert clean_temp_files(tmp.parent) == [] and tmp.exists()  # locked: still in use
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert tmp.exists()  # what SIGKILL leaves behind ...
    write_text(tmp_path / "run" / "metrics.json", "{}")  # ... the next write there removes
    assert not tmp.exists() and sorted(p.name for p in tmp.parent.iterdir()) == ["metrics.json"]


def test_a_locked_old_temporary_file_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / ".a.png.abcdefgh.png"
    path.write_bytes(b"")
    _age(path, 10 * STALE_AFTER)
    with open(path, "rb+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert clean_temp_files(tmp_path) == [] and path.exists()
    assert clean_temp_files(tmp_path) == [path] and not path.exists()


# --- Ctrl-C --------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_exit_130(
    isic2017_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    module = importlib.import_module("lessons_lib.data.prepare")  # not the function `prepare`

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "prepare", interrupted)
    args = ["data", "prepare", "--dataset", "isic2017", "--root", str(isic2017_root)]
    assert cli.main([*args, "--size", "20", "--out", str(tmp_path / "p")]) == 130
    out, err = capsys.readouterr()
    assert (out, err) == ("", "interrupted\n")


def test_each_seed_of_a_seeded_split_prepares_into_a_cache_of_its_own(
    tmp_path: Path, monkeypatch
) -> None:
    """A ``folder`` (or PH2) dataset's split is drawn from the seed, so its cache folder names
    the seed: preparing seed 2 leaves seed 1's cache whole (a run of seed 1 still reading it
    lost its images when both shared one folder). An official split's cache has no seed, and
    a folder given as ``out`` that holds another seed's split is refused, not rewritten."""
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "own"
    for i in range(20):
        write_pair(root / "images" / f"a{i:02d}.png", root / "masks" / f"a{i:02d}.png", seed=i)
    first = prepare(root, "folder", size=20, workers=1, seed=1)
    files = {e["id"]: first.path / e["image"] for e in first.entries()}
    second = prepare(root, "folder", size=20, workers=1, seed=2)
    assert first.path != second.path and first.path.name.endswith("-20-seed1")
    assert {e["id"]: e["split"] for e in first.entries()} != {
        e["id"]: e["split"] for e in second.entries()
    }
    assert all(path.is_file() for path in files.values())  # seed 1's run can go on reading
    assert PreparedData.load(first.path).manifest["seed"] == 1
    assert prepare(root, "folder", size=20, workers=1, seed=1).path == first.path  # reused
    with pytest.raises(DataError, match="seed 1, not 2") as refused:
        prepare(root, "folder", size=20, out=first.path, workers=1, seed=2)
    assert str(first.path) in str(refused.value)
    isic = tmp_path / "isic"
    for split in ("Training", "Validation", "Test_v2"):
        for i in range(2):
            write_pair(
                isic / f"ISIC-2017_{split}_Data" / f"ISIC_{split[:2]}{i}.jpg",
                isic
                / f"ISIC-2017_{split}_Part1_GroundTruth"
                / f"ISIC_{split[:2]}{i}_segmentation.png",
                seed=i,
            )
    official = [prepare(isic, "isic2017", size=20, workers=1, seed=s).path for s in (1, 2)]
    assert official[0] == official[1] and "seed" not in official[0].name


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_during_prepare_stops_the_workers_and_the_next_run_resumes(tmp_path: Path):
    root, out = tmp_path / "own", tmp_path / "p"
    for i in range(30):
        write_pair(root / "images" / f"a{i:02d}.png", root / "masks" / f"a{i:02d}.png", seed=i)
    slow = textwrap.dedent(
        """
        import importlib, sys, time
        from lessons_lib.cli import main

        prepare = importlib.import_module("lessons_lib.data.prepare")

        load = prepare.load_resized
        def slow(*args):  # about 30 s of work in all: Ctrl-C comes long before the end,
            time.sleep(2.0)  # even on a loaded machine
            return load(*args)
        prepare.load_resized = slow
        sys.exit(main(sys.argv[1:]))
        """
    )
    args = ["data", "prepare", "--dataset", "folder", "--root", str(root), "--size", "20"]
    proc = subprocess.Popen(
        [sys.executable, "-c", slow, *args, "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # with Ctrl-C's default action, as a shell starts it (a test runner's worker may ignore
        # SIGINT, and an ignored signal stays ignored in the processes it starts)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/masks/*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the parent and its workers
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and stderr == "interrupted\n", stderr
    assert stdout == ""
    time.sleep(0.2)
    assert not _group_alive(proc.pid)  # no worker left running
    done = {p: p.stat().st_mtime_ns for p in out.glob("*/masks/*.png")}
    assert 0 < len(done) < 30 and _temp_files(out) == [] and not (out / MANIFEST).exists()

    prep = prepare(root, "folder", size=20, out=out, workers=2)
    assert len(prep.entries()) == 30
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished work is reused
    assert json.loads((out / MANIFEST).read_text())["entries"] == prep.manifest["entries"]
