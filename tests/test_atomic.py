"""lessons_lib.atomic: a failed write leaves the old file and no temporary file behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lessons_lib.atomic import atomic_path, cache_dir, write_json, write_text, write_with


def test_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    dest = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_json_handles_numpy_and_paths(tmp_path: Path) -> None:
    dest = write_json(
        tmp_path / "sub" / "m.json", {"x": np.float32(0.5), "p": Path("a/b"), "t": (1, 2)}
    )
    assert json.loads(dest.read_text()) == {"x": 0.5, "p": "a/b", "t": [1, 2]}
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_write_with_a_saver(tmp_path: Path) -> None:
    dest = write_with(tmp_path / "n.npy", lambda p: np.save(open(p, "wb"), np.arange(3)))
    assert np.load(dest).tolist() == [0, 1, 2]


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    mask = os.umask(0o022)
    try:
        mode = stat.S_IMODE(write_text(tmp_path / "m.json", "{}").stat().st_mode)
    finally:
        os.umask(mask)
    assert mode == 0o644
