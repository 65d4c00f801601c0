"""Download a public dataset, verify it while it streams and unpack it into its publisher's layout.

``python -m lessons_lib data download DATASET --to DIR`` fetches the segmentation archives of
ISIC 2016 (ISBI 2016 Part 1), ISIC 2017 Task 1, ISIC 2018 Task 1 or PH2 and leaves ``DIR``
exactly as :func:`lessons_lib.data.find_pairs` reads it (the folder names come from
:data:`lessons_lib.data.layouts.LAYOUTS`, the one copy of them).

Sources:

* ISIC: ``https://isic-archive.s3.amazonaws.com/challenges/<year>/<file>`` (the host since
  2025), then the earlier ``https://isic-challenge-data.s3.amazonaws.com/<year>/<file>``. The
  segmentation archives are CC-0. Their checksums (:data:`CHECKSUMS`) are the published ones:
  SHA-256 and sizes for 2018, MD5 for 2016 and 2017 (whose sizes are not published).
* PH2: ``PH2Dataset.rar``, shared from the dataset's page (:data:`PH2_PAGE`) through a Dropbox
  link (:data:`PH2_URL`). **No checksum is published for it**: the SHA-256 of what was
  downloaded is printed and recorded. Its terms allow research and education only and forbid
  redistribution, so nothing happens without ``accept_terms`` (``--accept-terms``). Unpacking a
  RAR needs an external tool: ``unrar``, ``7z`` or ``bsdtar`` (:func:`find_rar_tool`).
* A mirror (a local copy, or the tests' server) replaces those hosts: pass ``mirrors`` or set
  ``LESSONS_DOWNLOAD_MIRROR`` to one or more base URLs (space- or comma-separated, tried in
  order). A mirror serves ``<base>/<year>/<file>`` for ISIC and ``<base>/ph2/PH2Dataset.rar``.

Every archive is written to ``<archive>.partial`` and hashed chunk by chunk as it arrives (a
10 GB file is never read twice). An interrupted download resumes with an HTTP ``Range``
request, after hashing the bytes already there once; a server that ignores ``Range`` (200
instead of 206) restarts the file cleanly, and 416 (nothing left to send) is understood. The
file gets its final name (:func:`os.replace`) only once its checksum matches; a mismatch
deletes that ``.partial`` file and nothing else. A verified archive gets a small
``<archive>.verified`` marker, so a rerun neither downloads nor re-hashes it (``reverify``
hashes it again). An archive put in the archive folder by hand is hashed once and used.

Unpacking is safe: no member may land outside the target (``..``, absolute paths, drive
letters), symbolic links are refused, and the total and per-member sizes and compression ratios
are checked before anything is written (a zip bomb is refused). An archive is unpacked into a
temporary sibling folder, its image (or mask) count is checked against the published one
(:data:`EXPECTED_COUNTS`), and only then is the folder renamed into place, so an interrupted
run never leaves a half-unpacked folder. ``DIR`` is locked while a download runs.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from lessons_lib.atomic import ensure_writable, write_json
from lessons_lib.data.layouts import (
    LAYOUTS,
    PH2_DIR,
    PUBLISHED_SPLITS,
    SPLITS,
    find_pairs,
    list_images,
)
from lessons_lib.errors import DataError

try:  # POSIX: lock the target folder, cap the size of files a RAR tool writes
    import fcntl
    import resource
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    resource = None

DOWNLOADABLE = ("isic2016", "isic2017", "isic2018", "ph2")
#: The ISIC challenge archives' hosts, newest first; a file is ``<host>/<year>/<file>``.
ISIC_HOSTS = (
    "https://isic-archive.s3.amazonaws.com/challenges",
    "https://isic-challenge-data.s3.amazonaws.com",
)
#: PH2's page (its terms) and the direct link to its archive used by most projects.
PH2_PAGE = "https://www.fc.up.pt/addi/ph2%20database.html"
PH2_URL = "https://www.dropbox.com/s/k88qukc20ljnbuo/PH2Dataset.rar?dl=1"
#: The folder ``PH2Dataset.rar`` unpacks to (holding ``PH2 Dataset images/``).
PH2_FOLDER = "PH2Dataset"
#: The environment variable naming mirror base URLs (space- or comma-separated).
MIRROR_ENV = "LESSONS_DOWNLOAD_MIRROR"

PH2_CITATION = (
    "T. Mendonça, P. M. Ferreira, J. S. Marques, A. R. S. Marçal and J. Rozeira,\n"
    '"PH2 - A dermoscopic image database for research and benchmarking",\n'
    "35th Annual International Conference of the IEEE Engineering in Medicine and Biology\n"
    "Society (EMBC), 2013, pp. 5437-5440, doi:10.1109/EMBC.2013.6610779"
)
PH2_TERMS = (
    "PH2 dermoscopic image database (Universidade do Porto, Instituto Superior Técnico Lisboa,\n"
    "Hospital Pedro Hispano). Its terms of use, in short (the authoritative text is on\n"
    f"{PH2_PAGE}):\n"
    "  * it may be used for research and education only;\n"
    "  * it must not be redistributed: share the link to its page, never the files;\n"
    "  * every publication or report that uses it must cite\n"
    + "\n".join(f"      {line}" for line in PH2_CITATION.splitlines())
)

#: Bytes read from the network or a file at a time.
CHUNK = 1 << 20
#: Socket timeout (seconds) for connecting and for each read.
TIMEOUT = 60.0
#: Attempts per file when the connection breaks (each one resumes where the last stopped).
RETRIES = 3
#: Seconds to wait before a second attempt (doubled for each further one).
RETRY_WAIT = 2.0
#: Most bytes one archive may unpack to (the largest, ISIC 2018 training, is ~11.2 GB).
MAX_UNPACKED_BYTES = 32 * 2**30
#: Highest compression ratio accepted (for the whole archive and for any member above
#: :data:`RATIO_FLOOR`); JPEG and PNG files hardly compress, so ~1 is what real archives show.
MAX_RATIO = 100.0
#: Members smaller than this (text files, tiny masks) are exempt from the per-member ratio check.
RATIO_FLOOR = 1 << 20
#: Largest single file an external RAR tool may write (PH2's files are ~1.3 MB).
MAX_TOOL_FILE_BYTES = 256 * 2**20
#: Most members (files and folders) an archive may hold: 2.5 times the largest published one
#: (ISIC 2017's training images, about 4,000 files with their superpixel maps). Ten thousand
#: empty files pass every size and ratio check; this stops them before anything is written.
MAX_MEMBERS = 10_000
#: The tools that can unpack a RAR archive, in order of preference.
RAR_TOOLS = ("unrar", "7z", "7zz", "7za", "bsdtar")


@dataclass(frozen=True)
class Checksum:
    """A published checksum of one archive.

    Args:
        algorithm: A :mod:`hashlib` name (``"sha256"``, ``"md5"``).
        digest: The expected hexadecimal digest.
        size: The size in bytes, where it is published (``None`` otherwise).
    """

    algorithm: str
    digest: str
    size: int | None = None


#: Published checksums, by archive file name. PH2 has none.
CHECKSUMS: dict[str, Checksum] = {
    # ISIC 2018 Task 1: SHA-256 and sizes
    "ISIC2018_Task1-2_Training_Input.zip": Checksum(
        "sha256", "80f98572347a2d7a376227fa9eb2e4f7459d317cb619865b8b9910c81446675f", 11165358566
    ),
    "ISIC2018_Task1_Training_GroundTruth.zip": Checksum(
        "sha256", "99f8b2bb3c4d6af483362010715f7e7d5d122d9f6c02cac0e0d15bef77c7604c", 27402895
    ),
    "ISIC2018_Task1-2_Validation_Input.zip": Checksum(
        "sha256", "0ea920fcfe512d12a6e620b50b50233c059f67b10146e1479c82be58ff15a797", 239231159
    ),
    "ISIC2018_Task1_Validation_GroundTruth.zip": Checksum(
        "sha256", "f6911e9c0a64e6d687dd3ca466ca927dd5e82145cb2163b7a1e5b37d7a716285", 759706
    ),
    "ISIC2018_Task1-2_Test_Input.zip": Checksum(
        "sha256", "e59ae1f69f4ed16f09db2cb1d76c2a828487b63d28f6ab85997f5616869b127d", 2370457338
    ),
    "ISIC2018_Task1_Test_GroundTruth.zip": Checksum(
        "sha256", "2e8f6edce454a5bdee52485e39f92bd6eddf357e81f39018d05512175238ef82", 9680101
    ),
    # ISIC 2017 Task 1: MD5 (sizes not published)
    "ISIC-2017_Training_Data.zip": Checksum("md5", "a14a7e622c67a358797ae59abb8a0b0c"),
    "ISIC-2017_Training_Part1_GroundTruth.zip": Checksum("md5", "77fdbeb6fbec4139937224416b250f4c"),
    "ISIC-2017_Validation_Data.zip": Checksum("md5", "8d6419d942112f709894c0d82f6c9038"),
    "ISIC-2017_Validation_Part1_GroundTruth.zip": Checksum(
        "md5", "64d3e68fa2deeb8a5e89aa8dec2efd44"
    ),
    "ISIC-2017_Test_v2_Data.zip": Checksum("md5", "5f6a0b5e1f2972bd1f5ea02680489f09"),
    "ISIC-2017_Test_v2_Part1_GroundTruth.zip": Checksum("md5", "b1742de6bd257faca3b2b21a4aa3b781"),
    # ISIC 2016 (ISBI 2016) Part 1: MD5 (sizes not published)
    "ISBI2016_ISIC_Part1_Training_Data.zip": Checksum("md5", "2029f387e62dcc062b1370b1efc1f7fb"),
    "ISBI2016_ISIC_Part1_Training_GroundTruth.zip": Checksum(
        "md5", "fbd77134298f3511479a37bac93109c7"
    ),
    "ISBI2016_ISIC_Part1_Test_Data.zip": Checksum("md5", "efebcaeaae751007401a40a60d391f93"),
    "ISBI2016_ISIC_Part1_Test_GroundTruth.zip": Checksum("md5", "492a7711a2e19b96114cab6c96bd1ad5"),
}

#: Published image counts (each image has one mask), by dataset and split (PH2: ``"all"``):
#: a copy of :data:`lessons_lib.data.layouts.PUBLISHED_SPLITS`, which tests replace to pass tiny
#: archives.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {k: dict(v) for k, v in PUBLISHED_SPLITS.items()}

_YEARS = {"isic2016": "2016", "isic2017": "2017", "isic2018": "2018"}


@dataclass(frozen=True)
class Archive:
    """One downloadable archive.

    Args:
        dataset: The dataset key (``isic2018``, ``ph2``...).
        split: ``train``, ``valid``, ``test`` (PH2: ``all``).
        kind: What it holds: ``images``, ``masks`` or ``ph2`` (both).
        file: Its file name.
        path: Its path below a host or mirror base URL.
        folder: The folder it becomes below the dataset root.
    """

    dataset: str
    split: str
    kind: str
    file: str
    path: str
    folder: str


def archives_of(dataset: str) -> dict[str, tuple[Archive, ...]]:
    """The archives of ``dataset`` by split (images first, then masks), named after its layout.

    Raises:
        DataError: ``dataset`` cannot be downloaded.
    """
    if dataset not in DOWNLOADABLE:
        raise DataError(
            f"cannot download {dataset!r}; downloadable datasets: {', '.join(DOWNLOADABLE)}"
        )
    if dataset == "ph2":
        rar = Archive("ph2", "all", "ph2", "PH2Dataset.rar", "ph2/PH2Dataset.rar", PH2_FOLDER)
        return {"all": (rar,)}
    year = _YEARS[dataset]
    return {
        split: tuple(
            Archive(dataset, split, kind, f"{folder}.zip", f"{year}/{folder}.zip", folder)
            for kind, folder in zip(("images", "masks"), folders, strict=True)
        )
        for split, folders in LAYOUTS[dataset].folders.items()
    }


def mirror_bases(mirrors: Sequence[str] | None = None) -> list[str] | None:
    """The mirror base URLs to use: ``mirrors`` if given, else ``$LESSONS_DOWNLOAD_MIRROR``.

    Returns:
        The base URLs without trailing slashes, or ``None`` to use the publishers' hosts.
    """
    if mirrors is None:
        mirrors = os.environ.get(MIRROR_ENV, "").replace(",", " ").split()
    bases = [m.strip().rstrip("/") for m in mirrors if m.strip()]
    return bases or None


def archive_urls(archive: Archive, mirrors: Sequence[str] | None = None) -> list[str]:
    """The URLs to try for ``archive``, in order (see :func:`mirror_bases`)."""
    bases = mirror_bases(mirrors)
    if bases:
        return [f"{base}/{archive.path}" for base in bases]
    if archive.dataset == "ph2":
        return [PH2_URL]
    return [f"{host}/{archive.path}" for host in ISIC_HOSTS]


def human_size(n: int | None) -> str:
    """``n`` bytes as ``'11.2 GB'`` (decimal units, as the hosts publish them)."""
    if n is None:
        return "size unknown"
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


# --- downloading -------------------------------------------------------------------------


def _partial(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def _bar(desc: str, total: int | None, initial: int, progress: bool) -> tqdm:
    return tqdm(
        desc=desc,
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )


def hash_file(path: Path, algorithm: str, progress: bool = True) -> Any:
    """Hash ``path`` chunk by chunk (with a progress bar), returning the hash object."""
    hasher = hashlib.new(algorithm)
    with (
        open(path, "rb") as f,
        _bar(f"checking {path.name}", path.stat().st_size, 0, progress) as b,
    ):
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            b.update(len(chunk))
    return hasher


def _free_space_check(folder: Path, needed: int, what: str) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # pragma: no cover - an unusual file system
        return
    if needed > free:
        raise DataError(
            f"not enough free disk space for {what}: {human_size(needed)} needed, "
            f"{human_size(free)} free",
            folder,
            "free some space, or pass another --to (or --archives) on a larger disk",
        )


def _reason(err: BaseException, timeout: float) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s (timed out)"
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed before the end of the file"
    return str(err) or type(err).__name__


_CHANGED = "the published size"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class _State:
    """A download in progress: bytes in the ``.partial`` file and their running hash."""

    have: int
    hasher: Any
    total: int | None = None
    url: str | None = None  # where the bytes came from


class _Failed(Exception):
    """One URL did not deliver (the reason is the message); another may."""


class _Cut(Exception):
    """The connection broke mid-file; what arrived is kept for a resume."""


def _restart(partial: Path, state: _State, algorithm: str) -> None:
    """Empty the ``.partial`` file and its hash: the next request starts from byte 0."""
    partial.write_bytes(b"")
    state.have, state.hasher, state.total = 0, hashlib.new(algorithm), None


def _stream_one(
    opener: urllib.request.OpenerDirector,
    url: str,
    partial: Path,
    state: _State,
    size: int | None,
    algorithm: str,
    timeout: float,
    progress: bool,
) -> None:
    """Fetch ``url`` into ``partial`` from byte ``state.have`` on, hashing every chunk.

    Raises:
        _Failed: the URL gave no usable answer, or sent more than the file holds (``state``
            holds the sane bytes it sent, if any).
        _Cut: the transfer broke (``state`` holds what arrived).
    """
    headers = {"User-Agent": "lessons_lib (python urllib)", "Accept-Encoding": "identity"}
    if state.have:
        headers["Range"] = f"bytes={state.have}-"
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and state.have:  # nothing left to send from that offset
            match = _CONTENT_RANGE.match(err.headers.get("Content-Range", "") or "")
            remote = int(match.group(3)) if match and match.group(3) != "*" else None
            err.close()
            if remote == state.have:
                state.total = remote  # the partial file is already complete
                return
            print(f"{partial.name}: the server has no bytes after {state.have}: starting again")
            _restart(partial, state, algorithm)
            return _stream_one(opener, url, partial, state, size, algorithm, timeout, progress)
        err.close()
        raise _Failed(_reason(err, timeout)) from None
    except (OSError, http.client.HTTPException, ValueError) as err:  # ValueError: a bad URL
        raise _Failed(_reason(err, timeout)) from None
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if state.have and status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "") or "")
            if not match or match.group(1) is None or int(match.group(1)) != state.have:
                print(f"{partial.name}: the server resumed at the wrong offset: starting again")
                _restart(partial, state, algorithm)
                resp.close()
                return _stream_one(opener, url, partial, state, size, algorithm, timeout, progress)
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif status == 200:
            if state.have:
                print(f"{partial.name}: the server ignored the resume request: starting again")
                _restart(partial, state, algorithm)
            total = length
        else:
            raise _Failed(f"unexpected HTTP status {status}")
        if size is not None and total is not None and total != size:
            raise _Failed(f"it offers {total} bytes, but {_CHANGED} is {size}")
        state.total = total if total is not None else size
        state.url = url
        verb = "resuming" if state.have else "downloading"
        print(f"{verb} {partial.name[: -len('.partial')]} ({human_size(state.total)}) from {url}")
        with (
            open(partial, "ab") as out,
            _bar(partial.name[: -len(".partial")], state.total, state.have, progress) as bar,
        ):
            try:
                while chunk := resp.read(CHUNK):
                    if state.total is not None and state.have + len(chunk) > state.total:
                        raise _Failed("it sent more bytes than the file holds")
                    out.write(chunk)
                    state.hasher.update(chunk)
                    state.have += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                out.flush()
                raise _Cut(_reason(err, timeout)) from None
            finally:
                out.flush()
                os.fsync(out.fileno())
    if state.total is not None and state.have < state.total:
        raise _Cut(f"the connection closed after {state.have} of {state.total} bytes")


def fetch(
    urls: Sequence[str],
    dest: Path | str,
    checksum: Checksum | None = None,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    progress: bool = True,
) -> str:
    """Download ``dest`` from the first URL of ``urls`` that answers, verifying it as it arrives.

    The bytes go to ``<dest>.partial``, hashed chunk by chunk. An existing ``.partial`` file is
    hashed once and resumed with a ``Range`` request; a broken connection is resumed up to
    ``retries`` times. ``dest`` appears (atomically) only once the checksum matches.

    Args:
        urls: Where to get the file, tried in order (the next one when a host fails).
        dest: The file to write.
        checksum: The published checksum; ``None`` means none is published (a SHA-256 is
            still computed and returned).
        timeout: Socket timeout in seconds (default :data:`TIMEOUT`).
        retries: Attempts when the transfer breaks (default :data:`RETRIES`).
        progress: Show progress bars (bytes, rate, time left) on stderr.

    Returns:
        The hexadecimal digest of the file (``checksum.algorithm``, or SHA-256).

    Raises:
        DataError: every URL failed (each is named with its reason), the transfer kept
            breaking (the ``.partial`` file is kept: rerun to resume), or the checksum or size
            does not match (the ``.partial`` file is deleted).
        KeyboardInterrupt: Ctrl-C; the ``.partial`` file is kept for a resume.
    """
    dest = Path(dest)
    timeout = TIMEOUT if timeout is None else timeout
    retries = RETRIES if retries is None else max(1, retries)
    algorithm = checksum.algorithm if checksum else "sha256"
    size = checksum.size if checksum else None
    partial = _partial(dest)
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        print(f"{partial.name} is longer than the published size: starting again")
        partial.unlink()
        have = 0
    if have:
        print(f"found {partial.name} ({human_size(have)}): checking it before resuming")
        state = _State(have, hash_file(partial, algorithm, progress))
    else:
        partial.touch()
        state = _State(0, hashlib.new(algorithm))
    if size is not None:
        _free_space_check(dest.parent, size - state.have, dest.name)
    opener = urllib.request.build_opener()  # reads the proxy settings of this moment
    order = list(urls)
    failures: dict[str, str] = {}
    try:
        for attempt in range(retries):
            if size is not None and state.have == size:
                break
            if attempt:
                time.sleep(RETRY_WAIT * 2 ** (attempt - 1))
                print(f"{dest.name}: resuming at byte {state.have} (attempt {attempt + 1})")
            cut = None
            for url in order:
                try:
                    _stream_one(opener, url, partial, state, size, algorithm, timeout, progress)
                except _Failed as why:
                    failures[url] = str(why)
                    if len(order) > 1:
                        print(f"{url} failed ({why})")
                    continue
                except _Cut as why:
                    failures[url] = cut = str(why)
                    order.remove(url)
                    order.insert(0, url)  # the host that worked is asked first next time
                    break
                break
            else:  # every URL failed outright
                tried = "; ".join(f"{u} ({r})" for u, r in failures.items())
                kept = f" ({partial.name} is kept: the rerun resumes it)" if state.have else ""
                if not state.have:
                    partial.unlink(missing_ok=True)
                fix = (
                    f"check your internet connection (and proxy settings) and rerun{kept}; a "
                    f"copy on another server can be used by setting {MIRROR_ENV} to its base URL"
                )
                if any(_CHANGED in r for r in failures.values()):
                    fix = (
                        "the file on the server is not the published one: if a rerun does the "
                        "same, the mirror has changed it; please report it to the course's "
                        "issue tracker"
                    )
                raise DataError(f"could not download {dest.name}: tried {tried}", dest.parent, fix)
            if cut is None:
                break
        else:
            raise DataError(
                f"the download of {dest.name} kept breaking ({cut}); {human_size(state.have)} "
                f"of {human_size(state.total)} are kept in {partial.name}",
                dest.parent,
                "rerun the same command to resume where it stopped",
            )
    except KeyboardInterrupt:
        print(
            f"\n{dest.name}: stopped at {human_size(state.have)}; rerun the same command to "
            f"resume ({partial} is kept)",
            file=sys.stderr,
        )
        raise
    got = state.hasher.hexdigest()
    bad_size = size is not None and state.have != size
    if checksum is not None and (got != checksum.digest or bad_size):
        partial.unlink(missing_ok=True)
        sizes = f", {state.have} bytes instead of {size}" if bad_size else ""
        raise DataError(
            f"the download does not match its published checksum: expected "
            f"{algorithm.upper()} {checksum.digest}, got {got}{sizes} (from {state.url}); "
            f"the partial download {partial.name} was deleted",
            dest,
            "rerun the same command to download it again; if the mismatch repeats, the file on "
            "the server has changed: please report it to the course's issue tracker",
        )
    os.replace(partial, dest)
    _write_marker(dest, algorithm, got)
    return got


def _write_marker(dest: Path, algorithm: str, digest: str) -> None:
    info = dest.stat()
    record = {
        "file": dest.name,
        "algorithm": algorithm,
        "digest": digest,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
    }
    write_json(_marker(dest), record)


def is_verified(dest: Path | str, checksum: Checksum | None) -> bool:
    """Whether ``dest`` has a ``.verified`` marker that still matches it (size, time, digest)."""
    dest = Path(dest)
    try:
        record = json.loads(_marker(dest).read_text())
        info = dest.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    same_file = record.get("size") == info.st_size and record.get("mtime_ns") == info.st_mtime_ns
    if checksum is None:
        return same_file
    expected = (checksum.algorithm, checksum.digest)
    return same_file and (record.get("algorithm"), record.get("digest")) == expected


def ensure_archive(
    archive: Archive,
    folder: Path,
    *,
    mirrors: Sequence[str] | None = None,
    reverify: bool = False,
    timeout: float | None = None,
    retries: int | None = None,
    progress: bool = True,
) -> Path:
    """Return the verified archive file in ``folder``, downloading it if needed.

    A file with a matching ``.verified`` marker is used as it is (unless ``reverify``); a file
    without one (put there by hand) is hashed once.

    Args:
        archive: Which archive.
        folder: Where archives are kept.
        mirrors: Base URLs replacing the publishers' hosts (see :func:`archive_urls`).
        reverify: Hash a present file again even if its marker matches.
        timeout: Socket timeout, as :func:`fetch`.
        retries: Attempts, as :func:`fetch`.
        progress: Show progress bars.

    Returns:
        The archive's path.

    Raises:
        DataError: as :func:`fetch`, or a present file that does not match its checksum.
    """
    dest = Path(folder) / archive.file
    checksum = CHECKSUMS.get(archive.file)
    if dest.is_file():
        if not reverify and is_verified(dest, checksum):
            print(f"{archive.file}: already downloaded and verified")
            return dest
        algorithm = checksum.algorithm if checksum else "sha256"
        got = hash_file(dest, algorithm, progress).hexdigest()
        size = dest.stat().st_size
        if checksum and (
            got != checksum.digest or (checksum.size is not None and size != checksum.size)
        ):
            raise DataError(
                f"this file does not match its published checksum: expected "
                f"{algorithm.upper()} {checksum.digest}, got {got} ({size} bytes)",
                dest,
                "delete it and rerun the same command to download it again",
            )
        _write_marker(dest, algorithm, got)
        print(f"{archive.file}: verified")
        return dest
    digest = fetch(
        archive_urls(archive, mirrors),
        dest,
        checksum,
        timeout=timeout,
        retries=retries,
        progress=progress,
    )
    if checksum is None:
        print(
            f"{archive.file}: verified nothing (no checksum is published for it); "
            f"its SHA-256 is {digest}"
        )
    else:
        print(f"{archive.file}: {checksum.algorithm.upper()} verified")
    return dest


# --- unpacking ---------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\\/]")
_SKIPPED = ("__MACOSX", ".DS_Store")


def unsafe_member(name: str) -> str | None:
    """Why an archive member called ``name`` may not be unpacked (``None`` if it may).

    Refused: absolute paths, Windows drive letters, ``..`` components and NUL bytes (``\\`` is
    read as a separator too, as Windows tools write it).
    """
    if "\x00" in name:
        return "has a NUL byte in its name"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "starts with a drive letter"
    if ".." in _SEPARATORS.split(name):
        return "climbs out of the target folder (..)"
    return None


def _refuse(archive: Path, what: str) -> DataError:
    return DataError(
        f"refusing to unpack this archive: {what}",
        archive,
        "nothing was put in place; the archive is not the published one: delete it and rerun, "
        "and if that repeats, report it",
    )


def check_zip(
    zf: zipfile.ZipFile,
    archive: Path,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
) -> int:
    """Check every member of ``zf`` before anything is unpacked.

    Args:
        zf: The open archive.
        archive: Its path (named in errors; its size bounds the overall ratio).
        max_bytes: Most bytes it may unpack to (default :data:`MAX_UNPACKED_BYTES`).
        max_ratio: Highest compression ratio (default :data:`MAX_RATIO`).

    Returns:
        The total unpacked size in bytes.

    Raises:
        DataError: a member that would land outside the target, a symbolic link, an encrypted
            member, more than :data:`MAX_MEMBERS` members, or sizes or ratios beyond the caps
            (a zip bomb).
    """
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_RATIO if max_ratio is None else max_ratio
    members = zf.infolist()
    if len(members) > MAX_MEMBERS:
        raise _refuse(archive, _too_many(len(members)))
    total = 0
    for info in members:
        why = unsafe_member(info.filename)
        if why:
            raise _refuse(archive, f"member {info.filename!r} {why}")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _refuse(archive, f"member {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise _refuse(archive, f"member {info.filename!r} is encrypted")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > max_ratio:
            raise _refuse(
                archive,
                f"member {info.filename!r} would unpack to {human_size(info.file_size)} from "
                f"{human_size(info.compress_size)} (ratio {ratio:.0f} > {max_ratio:g}: "
                "a zip bomb?)",
            )
        total += info.file_size
    if total > max_bytes:
        raise _refuse(
            archive,
            f"it would unpack to {human_size(total)}, more than the cap of {human_size(max_bytes)}",
        )
    packed = archive.stat().st_size
    if total > RATIO_FLOOR and total > max_ratio * packed:
        raise _refuse(
            archive,
            f"it would unpack to {human_size(total)} from {human_size(packed)} "
            f"(ratio {total / max(packed, 1):.0f} > {max_ratio:g}: a zip bomb?)",
        )
    return total


def _too_many(n: int) -> str:
    return (
        f"it holds {n:,} members, more than the cap of {MAX_MEMBERS:,} (the largest published "
        "archive holds about 4,000)"
    )


def extract_zip(
    archive: Path | str,
    into: Path | str,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
    progress: bool = False,
) -> int:
    """Unpack a zip archive into the existing folder ``into``, safely (see :func:`check_zip`).

    Members are written one by one, never more bytes than each declares; ``__MACOSX`` metadata
    is skipped. Call it on an empty temporary folder: on an error, part of the archive may be
    there.

    Args:
        archive: The zip file.
        into: An existing, empty folder.
        max_bytes: Most bytes it may unpack to (default :data:`MAX_UNPACKED_BYTES`).
        max_ratio: Highest compression ratio (default :data:`MAX_RATIO`).
        progress: Show a progress bar on stderr.

    Returns:
        The number of files written.

    Raises:
        DataError: an unsafe or corrupt archive.
    """
    archive, into = Path(archive), Path(into)
    base = into.resolve()
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            total = check_zip(zf, archive, max_bytes, max_ratio)
            _free_space_check(into, total, f"unpacking {archive.name}")
            with _bar(f"unpacking {archive.name}", total, 0, progress) as bar:
                for info in zf.infolist():
                    parts = [p for p in _SEPARATORS.split(info.filename) if p not in ("", ".")]
                    if not parts or parts[0] in _SKIPPED or parts[-1] in _SKIPPED:
                        continue
                    target = into.joinpath(*parts)
                    if not target.resolve().is_relative_to(base):
                        raise _refuse(archive, f"member {info.filename!r} lands outside the target")
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "xb") as out:
                        copied = 0
                        while chunk := src.read(CHUNK):
                            copied += len(chunk)
                            if copied > info.file_size:
                                raise _refuse(
                                    archive, f"member {info.filename!r} is longer than declared"
                                )
                            out.write(chunk)
                            bar.update(len(chunk))
                    written += 1
    except FileExistsError as err:
        raise _refuse(archive, f"it holds {err.filename} twice") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataError(
            f"not a readable zip archive ({err})",
            archive,
            "delete it and rerun the same command to download it again",
        ) from None
    return written


def check_tree(
    folder: Path | str, max_bytes: int | None = None, archive: Path | str | None = None
) -> int:
    """Check what an external tool unpacked into ``folder``: regular files and folders only.

    Args:
        folder: The (temporary) folder the tool unpacked into.
        max_bytes: Most bytes allowed in all (default :data:`MAX_UNPACKED_BYTES`).
        archive: The archive, named in errors (default: ``folder``).

    Returns:
        The total size of the files, in bytes.

    Raises:
        DataError: a symbolic link, a special file (device, FIFO), anything resolving outside
            ``folder``, more than :data:`MAX_MEMBERS` files and folders, or more than
            ``max_bytes`` (default :data:`MAX_UNPACKED_BYTES`).
    """
    folder = Path(folder)
    shown = Path(archive) if archive is not None else folder
    base = folder.resolve()
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    total = members = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        members += len(dirnames) + len(filenames)
        if members > MAX_MEMBERS:
            raise _refuse(shown, _too_many(members).replace("holds", "unpacked", 1))
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            member = path.relative_to(folder).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise _refuse(shown, f"{member!r} is a symbolic link (it could point anywhere)")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _refuse(shown, f"{member!r} is a special file (device, FIFO or socket)")
            if not path.resolve().is_relative_to(base):
                raise _refuse(shown, f"{member!r} resolves outside the target folder")
            if stat.S_ISREG(mode):
                total += path.lstat().st_size
    if total > max_bytes:
        raise _refuse(shown, f"it unpacked to {human_size(total)}, over {human_size(max_bytes)}")
    return total


def _is_bsdtar(path: str) -> bool:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "bsdtar" in out.stdout


def find_rar_tool() -> tuple[str, str] | None:
    """The first RAR-capable tool on ``PATH``: :data:`RAR_TOOLS`, or ``tar`` if it is bsdtar
    (as on macOS).

    Returns:
        ``(name, path)``, or ``None`` when there is none.
    """
    for name in RAR_TOOLS:
        path = shutil.which(name)
        if path:
            return name, path
    tar = shutil.which("tar")
    if tar and _is_bsdtar(tar):
        return "bsdtar", tar
    return None


RAR_TOOL_HELP = (
    "install a tool that unpacks RAR archives, then rerun: "
    "Debian/Ubuntu `sudo apt-get install libarchive-tools` (bsdtar), or `sudo apt-get install "
    "unrar` (non-free/multiverse), or `sudo apt-get install p7zip-full p7zip-rar`; "
    "macOS: the system `tar` is bsdtar, or `brew install libarchive` / `brew install sevenzip`; "
    "conda: `conda install -c conda-forge libarchive`"
)


def _tool_command(name: str, path: str, archive: Path, into: Path) -> list[str]:
    if name == "unrar":
        return [path, "x", "-o+", "-y", "-idq", str(archive), f"{into}{os.sep}"]
    if name == "bsdtar":
        return [path, "-x", "-f", str(archive), "-C", str(into)]
    return [path, "x", "-y", f"-o{into}", str(archive)]  # 7z, 7zz, 7za


def _limit_file_size() -> None:  # pragma: no cover - runs in the child process
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_TOOL_FILE_BYTES, MAX_TOOL_FILE_BYTES))


class ListedMember(NamedTuple):
    """One member of an archive as an external tool lists it."""

    name: str
    size: int
    kind: str  # "file", "folder" or what else the tool says (a link, a device ...)


def _list_command(name: str, path: str, archive: Path) -> list[str]:
    if name == "unrar":
        return [path, "lt", "-idc", str(archive)]  # technical listing, no copyright banner
    if name == "bsdtar":
        return [path, "-t", "-v", "-f", str(archive)]
    return [path, "l", "-slt", "-ba", str(archive)]  # 7z, 7zz, 7za: one "Key = value" block each


def _parse_listing(name: str, text: str) -> list[ListedMember]:
    """The members of a tool's listing (:func:`_list_command`): ``ValueError`` on a line it
    cannot read."""
    members = []
    if name == "bsdtar":  # ls -l style: mode links uid gid size month day year|time name
        for line in text.splitlines():
            if not line.strip():
                continue
            fields = line.split(None, 8)
            mode, size, member = fields[0], int(fields[4]), fields[8]
            kind = {"-": "file", "d": "folder"}.get(mode[0], f"link or special file ({mode})")
            if kind != "file" and " -> " in member:
                member = member.split(" -> ")[0]
            members.append(ListedMember(member, size, kind))
        return members
    blocks: list[dict[str, str]] = [{}]
    sep = ":" if name == "unrar" else "="  # unrar's "Name: x", 7z's "Path = x"
    for line in text.splitlines():
        if not line.strip():
            blocks.append({})
        elif sep in line:
            k, v = line.split(sep, 1)
            blocks[-1].setdefault(k.strip(), v.strip())
    for b in blocks:
        if name == "unrar":
            if "Name" not in b:
                continue  # the archive's own header block
            kind = {"File": "file", "Directory": "folder"}.get(b.get("Type", ""), b.get("Type"))
            members.append(ListedMember(b["Name"], int(b.get("Size") or 0), str(kind)))
            continue
        if "Path" not in b:
            continue
        kind = "folder" if b.get("Folder") == "+" else "file"
        mode = b.get("Mode") or b.get("Attributes", "").split(" ")[-1]
        if mode[:1] in ("l", "c", "b", "p", "s") or b.get("Symbolic Link") or b.get("Hard Link"):
            kind = f"link or special file ({mode or 'linked'})"
        members.append(ListedMember(b["Path"], int(b.get("Size") or 0), kind))
    return members


def list_with_tool(tool: tuple[str, str], archive: Path | str) -> list[ListedMember]:
    """The members of ``archive`` as the external tool lists them, nothing unpacked.

    Raises:
        DataError: the tool failed, or printed a listing this function cannot read.
    """
    archive = Path(archive)
    name, path = tool
    done = _run_tool(name, _list_command(name, path, archive), archive, archive.parent)
    try:
        return _parse_listing(name, done.stdout)
    except (ValueError, IndexError) as err:
        raise DataError(
            f"cannot read {name}'s listing of this archive ({err})",
            archive,
            "try another tool: " + RAR_TOOL_HELP,
        ) from None


def check_listing(
    members: Sequence[ListedMember], archive: Path | str, max_bytes: int | None = None
) -> int:
    """The rules :func:`check_zip` applies, on an external tool's listing, before it unpacks:
    at most :data:`MAX_MEMBERS` members, regular files and folders only, no absolute path or
    ``..``, at most ``max_bytes`` in all.

    Returns:
        The total size the listing declares, in bytes (for the free-space check).

    Raises:
        DataError: a rule broken (the archive and the member named).
    """
    archive = Path(archive)
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    if len(members) > MAX_MEMBERS:
        raise _refuse(archive, _too_many(len(members)))
    total = 0
    for m in members:
        parts = _SEPARATORS.split(m.name)
        if m.name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", m.name) or ".." in parts:
            raise _refuse(archive, f"member {m.name!r} lands outside the target")
        if m.kind not in ("file", "folder"):
            raise _refuse(archive, f"member {m.name!r} is not a file or a folder ({m.kind})")
        total += m.size
    if total > max_bytes:
        raise _refuse(
            archive, f"its listing declares {human_size(total)}, over {human_size(max_bytes)}"
        )
    return total


def _run_tool(
    name: str, command: list[str], archive: Path, cwd: Path, limit: bool = False
) -> subprocess.CompletedProcess:
    """Run an archive tool; a failure is a :class:`DataError` quoting what it said."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            preexec_fn=_limit_file_size if limit and resource is not None else None,
        )
    except OSError as err:
        raise DataError(f"could not run {name} ({err})", archive, RAR_TOOL_HELP) from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise DataError(
            f"{name} could not read this archive (exit status {done.returncode}: "
            f"{' / '.join(said) or 'no message'})",
            archive,
            "if the archive is damaged, delete it and rerun; otherwise try another tool: "
            + RAR_TOOL_HELP,
        )
    return done


def extract_with_tool(
    tool: tuple[str, str], archive: Path | str, into: Path | str, max_bytes: int | None = None
) -> None:
    """Unpack ``archive`` (a RAR) into the empty folder ``into`` with an external tool, as
    safely as a zip (:func:`extract_zip`): the tool lists the archive first and the listing is
    checked (:func:`check_listing`) and the free space too, before anything is unpacked; each
    file the tool then writes is capped at :data:`MAX_TOOL_FILE_BYTES` (POSIX), and what landed
    is checked again (:func:`check_tree`).

    Args:
        tool: ``(name, path)`` from :func:`find_rar_tool`.
        archive: The archive.
        into: An empty temporary folder.
        max_bytes: Cap on the total unpacked size.

    Raises:
        DataError: the tool failed (its message is quoted), the listing breaks a rule, the disk
            is too small, or what it wrote is unsafe.
    """
    archive, into = Path(archive), Path(into)
    name, path = tool
    total = check_listing(list_with_tool(tool, archive), archive, max_bytes)
    _free_space_check(into, total, f"unpacking {archive.name}")
    _run_tool(name, _tool_command(name, path, archive, into), archive, into, limit=True)
    check_tree(into, max_bytes, archive)


# --- counting ------------------------------------------------------------------------------


def count_files(folder: Path, kind: str) -> int:
    """How many images (``kind="images"``) or masks (``"masks"``) ``folder`` holds.

    Images are what the loaders read as images (:func:`lessons_lib.data.list_images`: no
    ``*_superpixels.png``, CSV or licence files); masks end in ``_segmentation.png`` (any case).
    For ``kind="ph2"``, the PH2 cases with both their image and their lesion mask.
    """
    if kind == "images":
        return len(list_images(folder))
    if kind == "masks":
        return sum(
            1
            for p in folder.iterdir()
            if p.is_file() and p.name.lower().endswith("_segmentation.png")
        )
    if kind == "ph2":
        n = 0
        for case in (folder / PH2_DIR).iterdir():
            image = case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp"
            mask = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
            n += case.name.startswith("IMD") and image.is_file() and mask.is_file()
        return n
    raise ValueError(f"unknown kind {kind!r}")


_WHAT = {"images": "images", "masks": "masks", "ph2": "image/mask cases"}


def _check_count(folder: Path, kind: str, expected: int, shown: Path, fix: str) -> int:
    found = count_files(folder, kind)
    if found != expected:
        raise DataError(f"expected {expected} {_WHAT[kind]}, found {found}", shown, fix)
    return found


def _ph2_base(folder: Path) -> Path | None:
    """``folder`` or its one sub-folder that holds ``PH2 Dataset images``."""
    if (folder / PH2_DIR).is_dir():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and (p / PH2_DIR).is_dir()]
    return subs[0] if len(subs) == 1 else None


def _unpacked_folder(tmp: Path, archive: Archive, path: Path) -> Path:
    """The folder inside ``tmp`` that becomes ``archive.folder``."""
    if archive.kind == "ph2":
        found = _ph2_base(tmp)
        if found is None:
            raise _refuse(path, f"it holds no folder '{PH2_DIR}'")
        return found
    if (tmp / archive.folder).is_dir():
        return tmp / archive.folder
    entries = [p for p in tmp.iterdir() if p.name not in _SKIPPED and not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        print(f"{archive.file}: its folder {entries[0].name} becomes {archive.folder}")
        return entries[0]
    if entries and all(p.is_file() for p in entries):
        return tmp
    names = ", ".join(sorted(p.name for p in entries)) or "nothing"
    raise DataError(
        f"expected one folder {archive.folder} in this archive, found {names}",
        path,
        "the archive's layout has changed: please report it",
    )


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.download.lock`` (POSIX): one download at a time."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(folder / ".download.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                "another download into this folder is running",
                folder,
                "wait for it to finish, or stop it, then rerun",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _install(
    archive: Archive,
    root: Path,
    store: Path,
    expected: int,
    tool: tuple[str, str] | None,
    delete_archive: bool,
    fetch_args: dict,
) -> None:
    """Make ``root/archive.folder`` hold the checked content of ``archive``."""
    target = root / archive.folder
    kind = archive.kind
    present = _ph2_base(root) if archive.kind == "ph2" else (target if target.is_dir() else None)
    if present is not None:
        fix = (
            "this folder is incomplete or not the published one: delete it and rerun "
            "(a verified archive is kept, so nothing is downloaded again)"
        )
        n = _check_count(present, kind, expected, present, fix)
        print(f"{present.name}: already unpacked ({n} {_WHAT[kind]})")
        return
    path = ensure_archive(archive, store, **fetch_args)
    tmp = Path(tempfile.mkdtemp(prefix=f".unpacking-{archive.folder}-", dir=root))
    try:
        print(f"unpacking {archive.file} ...")
        if archive.file.lower().endswith(".zip"):
            extract_zip(path, tmp, progress=fetch_args["progress"])
        else:
            assert tool is not None
            print(f"using {tool[0]} ({tool[1]})")
            extract_with_tool(tool, path, tmp)
        src = _unpacked_folder(tmp, archive, path)
        if kind != "ph2":  # ISIC's archives hold files only: a folder inside is not theirs
            folders = sorted(p.name for p in src.iterdir() if p.is_dir() and p.name not in _SKIPPED)
            if folders:
                raise _refuse(
                    path,
                    f"its folder {archive.folder} holds folder(s) {', '.join(folders[:5])}; the "
                    "published archive holds files only",
                )
        fix = (
            "the archive matched its checksum, so lessons_lib's expected count may be wrong: "
            "please report it"
            if CHECKSUMS.get(archive.file)
            else f"the archive may be damaged: delete {path} and rerun"
        )
        n = _check_count(src, kind, expected, Path(f"{archive.folder} (from {path})"), fix)
        os.rename(src, target)
        print(f"{archive.folder}: {n} {_WHAT[kind]} in place")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if delete_archive:
        path.unlink(missing_ok=True)
        _marker(path).unlink(missing_ok=True)
        print(f"deleted {path.name} (--delete-archives)")


def _selected(dataset: str, splits: Sequence[str] | None) -> list[Archive]:
    by_split = archives_of(dataset)
    if dataset == "ph2":
        if splits:
            raise DataError(
                "PH2 is one archive without official splits (a seeded split is drawn when it is "
                "loaded): download it without --splits"
            )
        return list(by_split["all"])
    if not splits:
        return [a for s in SPLITS if s in by_split for a in by_split[s]]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DataError(f"unknown split(s) {', '.join(unknown)}; valid splits: {', '.join(SPLITS)}")
    missing = [s for s in splits if s not in by_split]
    if missing:
        raise DataError(
            f"{dataset} has no {', '.join(repr(s) for s in missing)} split; it has "
            f"{', '.join(s for s in SPLITS if s in by_split)} (carve a validation set out of "
            "'train' with lessons_lib.data.split_pairs)"
        )
    return [a for s in SPLITS if s in splits for a in by_split[s]]


def download(
    dataset: str,
    to: Path | str,
    splits: Sequence[str] | None = None,
    *,
    accept_terms: bool = False,
    archives: Path | str | None = None,
    mirrors: Sequence[str] | None = None,
    delete_archives: bool = False,
    reverify: bool = False,
    timeout: float | None = None,
    retries: int | None = None,
    progress: bool = True,
) -> Path:
    """Download, verify and unpack ``dataset`` into ``to``, in its publisher's layout.

    Args:
        dataset: ``isic2016``, ``isic2017``, ``isic2018`` or ``ph2``.
        to: The dataset root to fill (made if needed): pass it as ``root`` to the loaders.
        splits: Which splits (``train``, ``valid``, ``test``); ``None`` for all the dataset
            has. PH2 has none (it is one archive).
        accept_terms: Accept PH2's terms of use (printed); required for ``ph2``.
        archives: Where the archives are kept (default ``<to>/archives``).
        mirrors: Base URLs replacing the publishers' hosts (default ``$LESSONS_DOWNLOAD_MIRROR``).
        delete_archives: Delete each archive once unpacked and checked.
        reverify: Hash archives already downloaded again instead of trusting their marker.
        timeout: Socket timeout in seconds (default :data:`TIMEOUT`).
        retries: Attempts per file when the connection breaks (default :data:`RETRIES`).
        progress: Show progress bars on stderr.

    Returns:
        The dataset root.

    Raises:
        DataError: PH2 terms not accepted, an unknown dataset or split, no RAR tool (for PH2),
            a failed or corrupt download, an unsafe archive, a wrong image count.
    """
    selected = _selected(dataset, splits)
    root = Path(to).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError("--to must be a folder, and this is a file", root, "pass a folder")
    if dataset == "ph2":
        print(PH2_TERMS)
        if not accept_terms:
            raise DataError(
                "PH2's terms of use (above) must be accepted: rerun with --accept-terms"
            )
    ensure_writable(root)
    store = ensure_writable(Path(archives).expanduser() if archives else root / "archives")
    fetch_args = {
        "mirrors": mirrors,
        "reverify": reverify,
        "timeout": timeout,
        "retries": retries,
        "progress": progress,
    }
    counts = EXPECTED_COUNTS[dataset]
    with _locked(root):
        for leftover in root.glob(".unpacking-*"):  # from a run that was killed outright
            shutil.rmtree(leftover, ignore_errors=True)
        for archive in selected:
            tool = None
            if archive.kind == "ph2" and _ph2_base(root) is None:
                tool = find_rar_tool()
                if tool is None:
                    raise DataError(
                        "no tool that unpacks RAR archives was found (looked for "
                        f"{', '.join(RAR_TOOLS)} and a bsdtar `tar` on PATH)",
                        None,
                        RAR_TOOL_HELP,
                    )
            _install(archive, root, store, counts[archive.split], tool, delete_archives, fetch_args)
    _report(root, dataset, sorted({a.split for a in selected}, key=(*SPLITS, "all").index))
    return root


def _report(root: Path, dataset: str, splits: list[str]) -> None:
    """Read the result back with the loaders and print what they find."""
    if dataset == "ph2":
        found = f"{len(find_pairs(root, 'ph2'))} image/mask pairs"
    else:
        found = ", ".join(f"{s} {len(find_pairs(root, dataset, s))}" for s in splits)
        found += " image/mask pairs"
    print(f"{dataset} is ready in {root}: {found}")
    print(f"next: python -m lessons_lib data check --dataset {dataset} --root {root}")


COLAB_DATA = Path("/content/data")
"""Where a chapter on Google Colab keeps the datasets it downloads (``<COLAB_DATA>/<dataset>``;
``LESSONS_COLAB_DATA`` moves it): the Colab machine's own disk, fast, gone with the session."""


def on_colab() -> bool:
    """Whether this process runs on Google Colab (its ``google.colab`` module is there)."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def fetch_for_colab(dataset: str) -> Path | None:
    """On Colab, the folder of ``dataset`` on the machine's disk, downloaded first if needed.

    A chapter run on Colab without ``data_dir`` (the ``colab`` profile: the paper's ISIC data)
    gets its data this way: :func:`download` into ``<COLAB_DATA>/<dataset>`` (every split, the
    archives deleted once unpacked to spare the disk); a rerun finds the data there and
    downloads nothing. PH2 is not downloaded unasked: its terms of use must be read and accepted
    (the error gives the one-line command). Anywhere else: ``None`` (the caller asks for
    ``data_dir``).

    Raises:
        DataError: PH2 asked for on Colab before it was downloaded; or what :func:`download`
            raises.
    """
    if not on_colab() or dataset not in EXPECTED_COUNTS:
        return None
    root = Path(os.environ.get("LESSONS_COLAB_DATA", COLAB_DATA)) / dataset
    if dataset == "ph2":
        if root.is_dir() and _ph2_base(root) is not None:
            return root
        raise DataError(
            "PH2 is downloaded only once you have read and accepted its terms of use",
            root,
            f"run `!python -m lessons_lib data download ph2 --accept-terms --to {root}` in a "
            "cell (it prints the terms), then run this chapter again",
        )
    print(f"Colab: {dataset} into {root} (downloaded once; a rerun finds it there)")
    return download(dataset, root, delete_archives=True)
