"""Validate a whole dataset and report every problem in one pass (``data check``)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lessons_lib.data.io import read_pair
from lessons_lib.data.layouts import available_splits, find_pairs
from lessons_lib.errors import DataError


def _check_pair(pair: tuple[Path, Path]) -> str | None:
    try:
        read_pair(*pair)
    except DataError as err:
        return str(err)
    return None


def check_dataset(
    root: Path | str, dataset: str, split: str | None = None, workers: int = 2
) -> tuple[int, list[str]]:
    """Open every image and mask of a dataset and collect every problem.

    Unlike the loaders, which stop at the first bad file, this reads them all: missing or
    orphan masks, unreadable or truncated files, wrong sizes, non-binary or colour masks.

    Args:
        root: Dataset root.
        dataset: Dataset key (see :data:`lessons_lib.data.DATASETS`).
        split: One split, or ``None`` for all.
        workers: Processes reading files in parallel.

    Returns:
        ``(number of pairs checked, problem messages)``; no messages means the data is good.
    """
    problems: list[DataError] = []
    pairs = []
    try:
        for s in [split] if split else available_splits(root, dataset):
            pairs += find_pairs(root, dataset, s, problems=problems)
    except DataError as err:  # no layout at all, or a bad split name
        problems.append(err)
    if workers > 1 and len(pairs) > 8:
        with ProcessPoolExecutor(workers) as pool:
            found = list(pool.map(_check_pair, pairs, chunksize=4))
    else:
        found = [_check_pair(p) for p in pairs]
    messages = [str(p) for p in problems] + [m for m in found if m]
    if not pairs and not messages:
        messages.append(str(DataError("no images found", root, "check root and dataset")))
    return len(pairs), messages
