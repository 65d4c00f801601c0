"""Atomic file writes and the course's cache folder.

Nothing a run writes is ever half-written: every file goes to a temporary name in its
destination folder first and is moved into place with :func:`os.replace`, which is atomic
on POSIX and Windows. An interrupted run leaves either the old file or the new one.

A run killed outright (SIGKILL, a power cut) can still leave its temporary file,
``.<name>.<8 random characters><suffix>``, beside the destination. Such leftovers are removed
by the next write into the same folder (:func:`clean_temp_files`), safely: a writer holds an
exclusive lock on its temporary file for as long as it uses it (the kernel drops the lock when
the process dies, however it dies), and only unlocked temporary files older than
:data:`STALE_AFTER` seconds are removed.

A folder that cannot be written (read-only, full, or a path through a regular file) is a
:class:`WriteError` that names the folder and, for the cache, the ``LESSONS_CACHE`` variable.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lessons_lib.errors import DataError

try:  # POSIX; on Windows temporary files are recognised by their age alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

#: Seconds after which an unlocked temporary file of the atomic writer counts as abandoned.
#: (A live writer holds a lock on its file, so age only guards the instant between creating the
#: file and locking it, and file systems that ignore locks.)
STALE_AFTER = 300.0
#: The same where locks cannot be checked (Windows, some network file systems): one hour.
STALE_AFTER_UNLOCKED = 3600.0

#: ``errno`` values that mean "this folder cannot take the file": read-only, no permission,
#: full (space or quota), too large, or a path that runs through a regular file.
WRITE_ERRNOS = frozenset(
    e
    for e in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EFBIG,
        errno.ENOTDIR,
        errno.EEXIST,
    )
    if e is not None
)

_RANDOM = re.compile(r"[a-z0-9_]{8}")  # the random part of tempfile's names
_CLEANED: set[str] = set()  # folders this process has already cleaned


class WriteError(DataError):
    """A folder that cannot be written: read-only, full, or not a folder.

    Args:
        message: What could not be written, and why.
        path: The folder (or file) at fault.
        fix: What to do about it.
        reason: The operating system's reason (``"No space left on device"``...).
    """

    def __init__(
        self,
        message: str,
        path: Path | str | None = None,
        fix: str | None = None,
        reason: str | None = None,
    ):
        super().__init__(message, path, fix)
        self.what = message
        self.reason = reason


def is_write_failure(err: BaseException) -> bool:
    """Whether ``err`` is an :class:`OSError` saying that a folder cannot take a file."""
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS


def _reason(err: OSError) -> str:
    if err.errno == errno.EEXIST:  # from mkdir: a file stands where a folder should be
        return "a file of that name is in the way"
    return err.strerror or str(err)


def cache_root() -> Path:
    """Where the cache folder is (``$LESSONS_CACHE`` or ``~/.cache/lessons_lib``), not made."""
    path = os.environ.get("LESSONS_CACHE") or Path.home() / ".cache" / "lessons_lib"
    return Path(path).expanduser()


def cache_fix() -> str:
    """The fix for a cache folder that cannot be written, naming ``LESSONS_CACHE``."""
    now = os.environ.get("LESSONS_CACHE")
    where = f"it is now {now}" if now else "it is unset, so ~/.cache/lessons_lib is used"
    return f"set LESSONS_CACHE to a writable folder with free space ({where})"


def in_cache(path: Path | str) -> bool:
    """Whether ``path`` lies inside the cache folder."""
    try:
        return Path(path).resolve().is_relative_to(cache_root().resolve())
    except OSError:  # pragma: no cover - an unreadable working directory
        return False


def _folder_fix(folder: Path) -> str:
    if in_cache(folder):
        return f"make it writable and free some space, or {cache_fix()}"
    return "make the folder writable and free some space, or write somewhere else"


def cache_dir() -> Path:
    """The course's cache folder: ``$LESSONS_CACHE`` or ``~/.cache/lessons_lib``.

    Raises:
        WriteError: the folder cannot be made (a read-only location, or a path through a file).
    """
    path = cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if not is_write_failure(err):
            raise
        raise WriteError(
            f"cannot use this cache folder ({_reason(err)})", path, cache_fix(), _reason(err)
        ) from None
    return path


def ensure_writable(folder: Path | str) -> Path:
    """Make ``folder`` (and its parents) and check that a file can be created in it.

    Raises:
        WriteError: it cannot be made or written (the message names the folder and the fix).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        if not is_write_failure(err):
            raise
        raise WriteError(
            f"cannot write in this folder ({_reason(err)})",
            folder,
            _folder_fix(folder),
            _reason(err),
        ) from None
    return folder


def temp_destination(name: str) -> str | None:
    """The destination's name if ``name`` is a temporary name of :func:`atomic_path`
    (``.<dest>.XXXXXXXX<sfx>``), else ``None``.

    ``XXXXXXXX`` is :func:`tempfile.mkstemp`'s random part and ``<sfx>`` the suffix of
    ``<dest>``, e.g. ``.ISIC_0000000.png.k2x8_q0a.png`` for ``ISIC_0000000.png``.
    """
    if not name.startswith("."):
        return None
    for suffix in {Path(name).suffix, ""}:  # the destination has this suffix, or none
        stem = name[: len(name) - len(suffix)]
        dest, dot, part = stem[1:-9], stem[-9:-8], stem[-8:]
        if dest and dot == "." and _RANDOM.fullmatch(part) and Path(dest).suffix == suffix:
            return dest
    return None


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary name of :func:`atomic_path` (:func:`temp_destination`)."""
    return temp_destination(name) is not None


def _abandoned(path: str, age: float) -> bool:
    """Whether no process holds the temporary file ``path`` (checked by taking its lock)."""
    if fcntl is None:  # pragma: no cover
        return age >= STALE_AFTER_UNLOCKED
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer holds it
    except OSError:  # locks not supported here: rely on age alone
        return age >= STALE_AFTER_UNLOCKED
    finally:
        os.close(fd)
    return True


def clean_temp_files(folder: Path | str, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder``.

    Only regular files named as :func:`atomic_path` names them are candidates, and of those
    only files older than ``older_than`` seconds that no process holds locked. Nothing else is
    ever touched. A missing or unreadable folder is left alone.

    Returns:
        The files removed.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed, now = [], time.time()
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        age = now - info.st_mtime
        if not stat.S_ISREG(info.st_mode) or age < older_than:
            continue
        if _abandoned(entry.path, age):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.absolute())
    if key not in _CLEANED:
        _CLEANED.add(key)
        clean_temp_files(folder)


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; move it onto ``dest`` if the block succeeds.

    The first write of a process into a folder also removes the temporary files that killed
    runs left there (:func:`clean_temp_files`).

    Raises:
        WriteError: the folder is read-only, full, or not a folder (nothing is left behind).

    Example:
        >>> with atomic_path(out / "model.pth") as tmp:  # doctest: +SKIP
        ...     torch.save(state, tmp)
    """
    dest = Path(dest)
    fd: int | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _clean_once(dest.parent)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
    except OSError as err:
        raise _write_error(err, dest) from None
    if not _lock(fd):  # the lock tells clean_temp_files that this file is in use
        os.close(fd)  # (and Windows cannot replace a file that is still open)
        fd = None
    tmp = Path(name)
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
            os.replace(tmp, dest)
        except OSError as err:
            if not (is_write_failure(err) and _concerns(err, dest.parent)):
                raise
            raise _write_error(err, dest) from None
    finally:
        tmp.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)


def _concerns(err: OSError, folder: Path) -> bool:
    """Whether ``err`` is about ``folder`` (a failed write names no file; an open names it)."""
    return err.filename is None or Path(os.fsdecode(err.filename)).parent == folder


def _write_error(err: OSError, dest: Path) -> BaseException:
    if not is_write_failure(err):
        return err
    reason = _reason(err)
    folder = dest.parent
    return WriteError(
        f"cannot write {dest.name} here ({reason})", folder, _folder_fix(folder), reason
    )


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


def jsonable(obj: Any) -> Any:
    """``obj`` as :func:`write_json` would store it and JSON read it back (tuples become lists,
    paths strings, numpy scalars plain numbers)."""
    return json.loads(json.dumps(obj, default=_plain))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
