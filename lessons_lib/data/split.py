"""Seeded train/valid/test splits for datasets without an official one.

PH2 and a user's own ``folder`` data have no official split. :func:`seeded_split` draws one
from a seed and saves it, beside the data when that folder is writable and otherwise in the
course cache, so reruns (and other chapters) use the very same images. :func:`split_pairs`
carves a random validation set out of a training set, as paper 002 did with 500 of ISIC
2018's training images.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def _draw(ids: list[str], seed: int) -> dict[str, list[str]]:
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train = round(FRACTIONS["train"] * len(ids))
    n_valid = round(FRACTIONS["valid"] * len(ids))
    cuts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid]}
    cuts["test"] = order[n_train + n_valid :]
    return {s: sorted(ids[i] for i in idx) for s, idx in cuts.items()}


def seeded_split(pairs: list[Pair], root: Path, dataset: str, seed: int = 0) -> dict[str, list]:
    """Split ``pairs`` 70/10/20 into train/valid/test with ``seed``, reusing a saved split.

    Args:
        pairs: Every ``(image, mask)`` pair of the dataset.
        root: Dataset root (the split file is saved there or in the cache).
        dataset: Dataset key, part of the split file's name.
        seed: Split seed.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``.

    Raises:
        DataError: the saved split names images that are gone, or misses new ones.
    """
    by_id = {image.stem: (image, mask) for image, mask in pairs}
    path = split_file(root, dataset, seed)
    if path.is_file():
        saved = json.loads(path.read_text())["splits"]
        listed = {i for ids in saved.values() for i in ids}
        if listed != set(by_id):
            gone, new = sorted(listed - set(by_id))[:5], sorted(set(by_id) - listed)[:5]
            raise DataError(
                f"saved split does not match the data (gone: {gone}, new: {new})",
                path,
                "delete this file to draw a new split (results from the old split are then "
                "not comparable with new ones)",
            )
    else:
        saved = _draw(sorted(by_id), seed)
        write_json(path, {"dataset": dataset, "root": str(root), "seed": seed, "splits": saved})
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
