"""Atomic file writes and the course's cache folder.

Nothing a run writes is ever half-written: every file goes to a temporary name in its
destination folder first and is moved into place with :func:`os.replace`, which is atomic
on POSIX and Windows. An interrupted run leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """The course's cache folder: ``$LESSONS_CACHE`` or ``~/.cache/lessons_lib``."""
    path = Path(os.environ.get("LESSONS_CACHE", Path.home() / ".cache" / "lessons_lib"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; move it onto ``dest`` if the block succeeds.

    Example:
        >>> with atomic_path(out / "model.pth") as tmp:  # doctest: +SKIP
        ...     torch.save(state, tmp)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(dest: Path | str, data: bytes) -> Path:
    """Atomically write ``data`` to ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: Path | str, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``dest``."""
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: Path | str, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy scalars and paths become plain)."""
    return write_text(dest, json.dumps(obj, indent=2, default=_plain) + "\n")


def write_with(dest: Path | str, save: Callable[[Path], Any]) -> Path:
    """Atomically write a file with a saver that takes a path, e.g. ``fig.savefig``."""
    with atomic_path(dest) as tmp:
        save(tmp)
    return Path(dest)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
