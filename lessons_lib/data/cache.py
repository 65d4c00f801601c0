"""What the course's cache holds, and removing the prepared datasets no run will read again.

The cache folder (``$LESSONS_CACHE``, or ``~/.cache/lessons_lib``) grows with every dataset,
input size and seed a student runs: ``prepared/`` holds one resized copy of a dataset per
dataset folder, size, seed (for a dataset split by seed) and dry-run limit
(:func:`lessons_lib.data.prepare.default_out`); ``synthetic/`` the generated datasets;
``splits/`` the seeded splits of read-only dataset folders; ``bench/`` the benchmarks' data.
``python -m lessons_lib data cache`` lists them with their sizes on disk, and
``--remove-unused`` deletes the prepared folders that no run reads again:

* its dataset folder is gone (a deleted download, a test's temporary data; a drive not mounted
  counts as gone: its cache is made again when it is back), so its entries name originals that
  no longer exist;
* it is named as an earlier version of the course named it (for example PH2 prepared before each
  seed got its own folder): a run of today prepares and reads another folder.

Nothing else is ever removed: not a preparation that has no ``manifest.json`` yet (it may be
running now; the next run of it resumes it), not the synthetic datasets (a smoke run reads
them), not a folder the course did not name (``prepare --out``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lessons_lib.atomic import cache_root
from lessons_lib.data.layouts import split_by_seed
from lessons_lib.data.prepare import MANIFEST, cache_stem, default_out


@dataclass
class CacheFolder:
    """One folder of the cache.

    Attributes:
        path: The folder.
        kind: ``prepared``, ``synthetic``, or the top-level folder's name (``splits``, ...).
        n_bytes: The size of its files.
        about: What it holds, in words (dataset, source folder, size, seed).
        unused: Why no run reads it again (it may be removed), or ``None``.
    """

    path: Path
    kind: str
    n_bytes: int
    about: str
    unused: str | None = None


def folder_bytes(path: Path) -> int:
    """The summed size of the files under ``path`` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


REMOVING = ".removing"
"""The suffix of a folder :func:`remove_unused` is deleting (``.<name>.removing``)."""


def _prepared(path: Path) -> CacheFolder:
    """A folder of ``prepared/``: what its manifest says, and whether a run reads it again."""
    if path.name.startswith(".") and path.name.endswith(REMOVING):
        about = "a folder whose removal was cut short"
        return CacheFolder(path, "prepared", folder_bytes(path), about, "its removal was cut short")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        dataset, root, size = manifest["dataset"], Path(manifest["root"]), int(manifest["size"])
    except FileNotFoundError:
        about = "an unfinished preparation (no manifest.json): the next run of it resumes it"
        return CacheFolder(path, "prepared", folder_bytes(path), about)
    except (OSError, ValueError, KeyError, TypeError) as err:
        about = f"an unreadable manifest.json ({err}); delete the folder by hand"
        return CacheFolder(path, "prepared", folder_bytes(path), about)
    seed, limit = int(manifest.get("seed", 0)), manifest.get("limit")
    about = f"{dataset} from {root} at {size} px"
    about += f", split with seed {seed}" if split_by_seed(dataset) else ""
    about += f", the first {limit} images of each split (a dry run)" if limit else ""
    unused = None
    expected = default_out(root, dataset, size, limit, seed).name
    if not root.is_dir():
        unused = "its dataset folder is gone"
    elif path.name != expected and path.name.startswith(f"{cache_stem(root, dataset)}-"):
        unused = f"named by an earlier version of the course: runs now prepare {expected}"
    return CacheFolder(path, "prepared", folder_bytes(path), about, unused)


def scan_cache(root: Path | str | None = None) -> list[CacheFolder]:
    """Every folder of the cache: each prepared dataset and synthetic dataset on its own, the
    other top-level folders (``splits``, ``bench``) whole.

    Args:
        root: The cache folder (default ``$LESSONS_CACHE`` or ``~/.cache/lessons_lib``).

    Returns:
        The folders, ``prepared`` first, each kind by name.
    """
    root = Path(root) if root is not None else cache_root()
    found: list[CacheFolder] = []
    if not root.is_dir():
        return found
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        if top.name == "prepared":
            found += [_prepared(p) for p in sorted(top.iterdir()) if p.is_dir()]
        elif top.name == "synthetic":
            found += [
                CacheFolder(p, "synthetic", folder_bytes(p), "a synthetic dataset (smoke runs)")
                for p in sorted(top.iterdir())
                if p.is_dir()
            ]
        else:
            found.append(CacheFolder(top, top.name, folder_bytes(top), f"the {top.name} folder"))
    order = {"prepared": 0, "synthetic": 1}
    return sorted(found, key=lambda f: (order.get(f.kind, 2), f.path.name))


def remove_unused(folders: list[CacheFolder]) -> list[CacheFolder]:
    """Delete the folders of ``folders`` that no run reads again (``unused``).

    Each is first renamed to a hidden name beside it, then deleted: a removal cut short leaves
    no folder under a name a run would read.

    Returns:
        The folders removed.
    """
    removed = []
    for folder in folders:
        if folder.unused is None:
            continue
        doomed = folder.path
        if not doomed.name.endswith(REMOVING):  # else: a removal cut short, finished now
            doomed = folder.path.with_name(f".{folder.path.name}{REMOVING}")
            if doomed.exists():  # an earlier removal of this name cut short
                shutil.rmtree(doomed)
            folder.path.rename(doomed)
        shutil.rmtree(doomed)
        removed.append(folder)
    return removed


def describe(folders: list[CacheFolder], root: Path) -> str:
    """The listing ``data cache`` prints: one line a folder, the total, and what is unused."""

    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f} MB"

    total = sum(f.n_bytes for f in folders)
    lines = [f"cache: {root} ({mb(total)} in {len(folders)} folders)"]
    for f in folders:
        line = f"{f.kind:<10} {mb(f.n_bytes):>12}  {f.path.name}: {f.about}"
        lines.append(line + (f"; UNUSED: {f.unused}" if f.unused else ""))
    unused = [f for f in folders if f.unused]
    if unused:
        n = sum(f.n_bytes for f in unused)
        lines.append(
            f"{len(unused)} prepared folder(s) ({mb(n)}) no run reads again: "
            "`python -m lessons_lib data cache --remove-unused` deletes them"
        )
    return "\n".join(lines)
