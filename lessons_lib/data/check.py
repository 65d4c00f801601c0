"""Validate a whole dataset and report every problem in one pass (``data check``)."""

from __future__ import annotations

from pathlib import Path

from lessons_lib.data.io import read_pair
from lessons_lib.data.layouts import SPLITS, find_pairs, split_by_seed
from lessons_lib.errors import DataError
from lessons_lib.parallel import parallel_map

# fewer pairs than this are read in this process: starting workers would cost more
_MIN_PAIRS_IN_PARALLEL = 9


def _check_pair(pair: tuple[Path, Path]) -> str | None:
    """The problem with one ``(image, mask)`` pair, or ``None`` when both read and match."""
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
    orphan masks, broken symbolic links, unreadable or truncated files, wrong sizes,
    non-binary or colour masks. Nothing is written: PH2 and ``folder`` data, which have no
    official split, are checked file by file and their seeded split is drawn later, when a
    chapter or ``prepare`` first needs it, from the files as they are then.

    Args:
        root: Dataset root.
        dataset: Dataset key (see :data:`lessons_lib.data.DATASETS`).
        split: One official split, or ``None`` for all. PH2 and ``folder`` data are checked
            whole whatever the split, since their splits are not drawn yet.
        workers: Processes reading files in parallel (:func:`lessons_lib.parallel.parallel_map`:
            Ctrl-C stops them cleanly). Up to 8 pairs are read in this process.

    Returns:
        ``(number of pairs checked, problem messages)``; no messages means the data is good.
        A root that is missing, is a file or holds no such layout, or an official split
        that is absent, is one problem message.
    """
    problems: list[DataError] = []
    pairs: list[tuple[Path, Path]] = []
    try:
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        official = None if split_by_seed(dataset) else split
        pairs = find_pairs(root, dataset, official, problems=problems)
    except DataError as err:  # no layout at all, an absent split, a root that is a file
        problems.append(err)
    found = parallel_map(_check_pair, pairs, workers, max_chunk=4, min_items=_MIN_PAIRS_IN_PARALLEL)
    messages = [str(p) for p in problems] + [m for m in found if m]
    if not pairs and not messages:
        messages.append(str(DataError("no images found", root, "check root and dataset")))
    return len(pairs), messages
