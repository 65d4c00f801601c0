"""Seeded train/valid/test splits for datasets without an official one.

PH2 and a user's own ``folder`` data have no official split. :func:`seeded_split` draws one
from a seed when a chapter or ``prepare`` first asks for a split (never when ``data check``
reads the files) and saves it, beside the data when that folder is writable and otherwise in
the course cache, so reruns (and other chapters) use the very same images. A split with an
empty part is not saved; removing an image keeps every other image in its split.
:func:`split_pairs` carves a random validation set out of a training set, as paper 002 did
with 500 of ISIC 2018's training images.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from lessons_lib.atomic import cache_dir, write_json
from lessons_lib.errors import DataError

Pair = tuple[Path, Path]
FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}


def split_file(root: Path, dataset: str, seed: int) -> Path:
    """Where the split of ``root`` is saved: beside the data if writable, else in the cache."""
    name = f"lessons_split_{dataset}_seed{seed}.json"
    if os.access(root, os.W_OK):
        return root / name
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "splits" / f"{digest}_{name}"


def split_sizes(n: int) -> dict[str, int]:
    """How many of ``n`` images the seeded split puts in ``train``, ``valid`` and ``test``."""
    n_train = round(FRACTIONS["train"] * n)
    n_valid = min(round(FRACTIONS["valid"] * n), n - n_train)
    return {"train": n_train, "valid": n_valid, "test": n - n_train - n_valid}


def min_images(split: str) -> int:
    """The fewest images for which the seeded split's ``split`` part holds one (or more)."""
    return next(n for n in range(1, 1000) if split_sizes(n)[split] > 0)


def _draw(ids: list[str], seed: int) -> dict[str, list[str]]:
    order = np.random.default_rng(seed).permutation(len(ids))
    sizes = split_sizes(len(ids))
    n_train, n_valid = sizes["train"], sizes["valid"]
    cuts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid]}
    cuts["test"] = order[n_train + n_valid :]
    return {s: sorted(ids[i] for i in idx) for s, idx in cuts.items()}


def _read_saved(path: Path) -> dict[str, list[str]]:
    fix = "delete this file to draw a new split (results from the old split are then not "
    fix += "comparable with new ones)"
    try:
        saved = json.loads(path.read_text())["splits"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"saved split is unreadable ({err!r})", path, fix) from None
    if not isinstance(saved, dict) or set(saved) != set(FRACTIONS):
        raise DataError("saved split does not list train, valid and test", path, fix)
    return saved


def seeded_split(pairs: list[Pair], root: Path, dataset: str, seed: int = 0) -> dict[str, list]:
    """Split ``pairs`` 70/10/20 into train/valid/test with ``seed``, reusing a saved split.

    A new split is saved only when each of its parts holds an image (a tiny dataset's split is
    drawn again, identically, until enough images are there). Images the saved split lists
    but that are gone (a broken file removed, as ``data check`` suggests) are left out of
    their split with a warning; every other image keeps its split, and the file is kept, so
    a restored image returns to its own split.

    Args:
        pairs: Every ``(image, mask)`` pair of the dataset.
        root: Dataset root (the split file is saved there or in the cache).
        dataset: Dataset key, part of the split file's name.
        seed: Split seed.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``.

    Raises:
        DataError: the saved split is unreadable, or misses images that are new.
    """
    by_id = {image.stem: (image, mask) for image, mask in pairs}
    path = split_file(root, dataset, seed)
    if path.is_file():
        saved = _read_saved(path)
        listed = {i for ids in saved.values() for i in ids}
        new = sorted(set(by_id) - listed)
        if new:
            gone = sorted(listed - set(by_id))
            raise DataError(
                f"saved split does not match the data: {len(new)} new image(s) "
                f"{new[:5]}{' ...' if len(new) > 5 else ''}"
                + (f", {len(gone)} gone {gone[:5]}" if gone else ""),
                path,
                "delete this file to draw a new split (results from the old split are then "
                "not comparable with new ones), or remove the new images",
            )
        gone = sorted(listed - set(by_id))
        if gone:
            warnings.warn(
                f"{path}: {len(gone)} image(s) of the saved split are gone and left out: "
                f"{gone[:5]}{' ...' if len(gone) > 5 else ''}",
                stacklevel=2,
            )
            saved = {s: [i for i in ids if i in by_id] for s, ids in saved.items()}
    else:
        saved = _draw(sorted(by_id), seed)
        if all(saved.values()):
            record = {"dataset": dataset, "root": str(root), "seed": seed, "splits": saved}
            write_json(path, record)
    return {s: [by_id[i] for i in ids] for s, ids in saved.items()}


def split_pairs(pairs: list[Pair], valid: int | float, seed: int = 0) -> tuple[list, list]:
    """Randomly hold out ``valid`` pairs (a count, or a fraction if < 1) from ``pairs``.

    Returns:
        ``(train_pairs, valid_pairs)``, each sorted by image id.
    """
    n = len(pairs)
    k = int(round(valid * n)) if isinstance(valid, float) and valid < 1 else int(valid)
    if not 0 < k < n:
        raise DataError(f"cannot hold out {k} of {n} images", fix="choose 0 < valid < n")
    chosen = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    key = lambda p: p[0].stem  # noqa: E731
    train = sorted((p for i, p in enumerate(pairs) if i not in chosen), key=key)
    return train, sorted((pairs[i] for i in chosen), key=key)
