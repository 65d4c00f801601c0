"""Datasets: layouts as published, robust readers, seeded splits, a resize cache, checks.

Public API::

    find_pairs(root, dataset, split=None) -> [(image_path, mask_path), ...]
    read_image(path), read_mask(path), read_pair(image_path, mask_path)
    prepare(root, dataset, size) -> PreparedData
    check_dataset(root, dataset) -> (n_pairs, [problem, ...])
    split_pairs(pairs, valid, seed) -> (train, valid)

Downloading (not imported here): ``lessons_lib.data.download.download(dataset, to, splits)``,
the ``data download`` command: verified, resumable, unpacked into the publisher's layout.
What the cache holds: ``lessons_lib.data.cache.scan_cache()``, the ``data cache`` command (and
``--remove-unused`` for the prepared folders no run reads again).
"""

from lessons_lib.data.check import check_dataset
from lessons_lib.data.io import mask_from_array, read_image, read_mask, read_pair
from lessons_lib.data.layouts import (
    DATASETS,
    LAYOUTS,
    PUBLISHED_SPLITS,
    SPLITS,
    available_splits,
    detect_dataset,
    find_pairs,
    list_images,
)
from lessons_lib.data.prepare import PreparedData, prepare, working_size
from lessons_lib.data.split import seeded_split, split_pairs

__all__ = [
    "DATASETS",
    "LAYOUTS",
    "PUBLISHED_SPLITS",
    "SPLITS",
    "PreparedData",
    "available_splits",
    "check_dataset",
    "detect_dataset",
    "find_pairs",
    "list_images",
    "mask_from_array",
    "prepare",
    "read_image",
    "read_mask",
    "read_pair",
    "seeded_split",
    "split_pairs",
    "working_size",
]
