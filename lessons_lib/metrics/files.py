"""Score folders of mask files: the file-reading and command-line part of the metrics.

ISIC masks are read and matched to their ground truth as ``isic-challenge-scoring``'s
``load_image.py`` does; PH2 and a user's own folder are matched by file stem (see
:func:`score_dirs_scorer`). :func:`main_score` renders
``python -m lessons_lib score TRUTH_DIR PRED_DIR [--json]``.

The work is decoding the PNGs (ISIC masks have up to 30 megapixels): each file is decoded once,
and the pairs are spread over the CPU's cores.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from lessons_lib.data.io import IMAGE_SUFFIXES
from lessons_lib.errors import DataError
from lessons_lib.masks import binarise
from lessons_lib.metrics.functional import METRIC_NAMES, confusion
from lessons_lib.metrics.scorer import POOLED, SegmentationScorer
from lessons_lib.parallel import parallel_map

__all__ = [
    "load_mask_file",
    "main_score",
    "score_dirs",
    "score_dirs_scorer",
    "score_dirs_summary",
]

_IGNORED_TRUTH_FILES = {"ATTRIBUTION.txt", "LICENSE.txt"}
# fewer pairs than this are scored in this process: starting workers would cost more
_MIN_PAIRS_IN_PARALLEL = 8
_ISIC_ID = re.compile(r"ISIC_[0-9]{7}")
# what a mask's stem may add to its image id outside ISIC: PH2's ``IMD002_lesion.bmp``, the
# ``<id>_segmentation.png`` that the loaders' "folder" layout and ``evaluate(save_dir=...)`` use
_MASK_STEM_SUFFIX = re.compile(r"_(segmentation|lesion)$", re.IGNORECASE)


def load_mask_file(path: Path | str) -> np.ndarray:
    """Read a mask file as the official scorer does: 8-bit greyscale ('L'), or 1-bit converted.

    Args:
        path: Image file.

    Shape:
        Returns ``(H, W)`` uint8.

    Raises:
        DataError: If the file is a folder or a broken link, cannot be decoded, is too large
            for PIL, or is not single-channel.
    """
    return np.asarray(_load_mask_image(path))


def _load_mask_image(path: Path | str) -> Image.Image:
    """:func:`load_mask_file`'s decoded 'L' image, before any copy into an array."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise DataError(
            f"broken symbolic link: its target {os.readlink(path)} does not exist",
            path=path,
            fix="point the link at an existing mask file, or replace it with the file itself",
        )
    if path.is_dir():
        raise DataError(
            "is a folder, not a mask file",
            path=path,
            fix="the folder must hold the mask files themselves (for PH2, copy every case's "
            "*_lesion.bmp into one folder); move this sub-folder out",
        )
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "1":
                image = image.convert("L")
            if image.mode != "L":
                raise DataError(
                    f"mask has image mode {image.mode!r}; the ISIC scorer accepts only 8-bit "
                    "greyscale ('L') or 1-bit images",
                    path=path,
                    fix="save the mask as a single-channel 8-bit PNG with values 0 and 255",
                )
            return image
    except Image.DecompressionBombError as error:
        raise DataError(
            f"image too large to read safely ({error})",
            path=path,
            fix="replace it with a mask of the original image's size",
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"cannot read the mask image ({error})",
            path=path,
            fix="replace it with a valid 8-bit greyscale PNG",
        ) from error


@dataclass(frozen=True)
class _Problem:
    """One file that keeps the folders from being scored; ``in_truth``: the truth is at fault."""

    error: DataError
    in_truth: bool


def _mask_id(stem: str) -> str:
    """A non-ISIC mask's image id: its stem without ``_segmentation`` or ``_lesion``."""
    return _MASK_STEM_SUFFIX.sub("", stem)


def _list_folder(folder: Path, role: str) -> list[Path]:
    """The sorted entries of ``folder`` (``role``: TRUTH_DIR or PRED_DIR), or a DataError."""
    if not folder.exists():
        raise DataError(f"{role} not found", path=folder, fix="pass an existing folder")
    if not folder.is_dir():
        raise DataError(
            f"{role} is a file, not a folder",
            path=folder,
            fix=f"pass the folder that holds the mask files as {role}",
        )
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise DataError(
            f"cannot list {role} ({error.strerror or error})",
            path=folder,
            fix="check the folder's permissions",
        ) from None


def _truth_id(truth_file: Path) -> tuple[str | None, _Problem | None]:
    """The image id of a ground-truth file, or the problem with its name."""
    match = _ISIC_ID.search(truth_file.stem)
    if match is not None:
        if "attribute_" in truth_file.stem:
            return None, _Problem(
                DataError(
                    "this is an ISIC 2018 Task 2 attribute mask; only lesion masks are scored here",
                    path=truth_file,
                    fix="point TRUTH_DIR at a Task 1 ground-truth folder",
                ),
                in_truth=True,
            )
        return match.group(0), None
    if truth_file.is_file() and truth_file.suffix.lower() not in IMAGE_SUFFIXES:
        return None, _Problem(
            DataError(
                "not a mask file: its name has no ISIC id (ISIC_ + 7 digits) and its extension "
                f"{truth_file.suffix or '(none)'} is not an image's "
                f"({', '.join(IMAGE_SUFFIXES)})",
                path=truth_file,
                fix="remove it from the ground-truth folder",
            ),
            in_truth=True,
        )
    return _mask_id(truth_file.stem), None


def _candidates(image_id: str, pred_files: list[Path]) -> tuple[list[Path], str]:
    """Prediction files for ``image_id``, and the naming rule they follow (for messages).

    An ISIC id matches every file whose stem contains its 7 digits, as the official scorer
    matches; any other id matches the files whose stem is the id, optionally followed by
    ``_segmentation`` or ``_lesion``.
    """
    if _ISIC_ID.fullmatch(image_id):
        number = image_id.split("_")[1]
        return (
            [p for p in pred_files if number in p.stem],
            f"a mask whose file name contains {number}, e.g. {image_id}_segmentation.png",
        )
    return (
        [p for p in pred_files if _mask_id(p.stem) == image_id],
        f"a mask named {image_id}.png or {image_id}_segmentation.png",
    )


def _score_one(
    truth_file: Path, image_id: str, pred_dir: Path, pred_files: list[Path]
) -> tuple[dict[str, int] | None, list[_Problem]]:
    """Confusion counts of one ground-truth file, or every problem found with it."""
    problems: list[_Problem] = []
    truth = pred = pred_file = None
    try:
        truth = load_mask_file(truth_file)
    except DataError as error:
        problems.append(_Problem(error, in_truth=True))
    candidates, rule = _candidates(image_id, pred_files)
    if not candidates:
        problems.append(
            _Problem(
                DataError(
                    "no prediction for this ground truth",
                    path=truth_file,
                    fix=f"add {rule} to {pred_dir}",
                ),
                in_truth=False,
            )
        )
    elif len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        problems.append(
            _Problem(
                DataError(
                    f"several predictions match ground truth {truth_file.name}: {names}",
                    path=pred_dir,
                    fix=f"keep exactly one of them ({rule})",
                ),
                in_truth=False,
            )
        )
    else:
        pred_file = candidates[0]
        try:
            pred = load_mask_file(pred_file)
        except DataError as error:
            problems.append(_Problem(error, in_truth=False))
    if truth is not None and pred is not None and pred.shape[:2] != truth.shape[:2]:
        problems.append(
            _Problem(
                DataError(
                    f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground truth "
                    f"{truth_file.name} is {truth.shape[1]}x{truth.shape[0]}",
                    path=pred_file,
                    fix="resize the prediction to the original image size (nearest neighbour)",
                ),
                in_truth=False,
            )
        )
    if problems or truth is None or pred is None:
        return None, problems
    return confusion(truth, pred), []


def _lesion_values(histogram: list[int], official: bool = False) -> np.ndarray:
    """The 8-bit values of a mask that :func:`~lessons_lib.metrics.binarise` calls lesion
    (``official``: that ``isic-challenge-scoring`` calls lesion, those above 128).

    ``binarise``'s rule depends only on which values occur (all in {0, 1}: a 0/1 mask; else
    ``> 128``), so it is applied to the values present, read from the mask's histogram.
    """
    present = np.flatnonzero(histogram)
    if official:
        return present[present > 128]
    return present[binarise(present.astype(np.uint8)[None, :])[0]]


def _is_zero_one(histogram: list[int]) -> bool:
    """Whether a mask holds 1s and nothing but 0s and 1s: lesion where 1 for this library (and
    the course's loaders), all background for the official scorer."""
    return histogram[1] > 0 and sum(histogram[2:]) == 0


def _image_confusion(
    truth: Image.Image, pred: Image.Image, official: bool = False
) -> dict[str, int]:
    """:func:`~lessons_lib.metrics.confusion` of two decoded 'L' masks of one size, counted by
    Pillow's histograms: no copy of the pixels into arrays (the tests check both agree).
    ``official``: lesion where a value is above 128, in every file, as the official scorer."""
    truth_hist, pred_hist = truth.histogram(), pred.histogram()
    truth_values = _lesion_values(truth_hist, official)
    pred_values = _lesion_values(pred_hist, official)
    in_truth = truth  # as a histogram mask: its non-zero pixels are counted
    if set(np.flatnonzero(truth_hist[1:]) + 1) != set(truth_values):
        lut = [0] * 256
        for value in truth_values:
            lut[value] = 255
        in_truth = truth.point(lut)  # non-zero where binarise says lesion
    pred_in_truth = pred.histogram(mask=in_truth)
    tp = sum(pred_in_truth[v] for v in pred_values)
    fn = sum(truth_hist[v] for v in truth_values) - tp
    fp = sum(pred_hist[v] for v in pred_values) - tp
    return {"tp": tp, "fp": fp, "tn": truth.width * truth.height - tp - fn - fp, "fn": fn}


def _pair_counts(
    files: tuple[Path, Path], official: bool = False
) -> tuple[dict[str, int], tuple[bool, bool]] | None:
    """Confusion counts of a ``(truth, prediction)`` file pair, each file decoded once, and
    whether each of the two is a 0/1 mask (:func:`_is_zero_one`); ``None`` when the pair cannot
    be scored (:func:`_score_one` then says why)."""
    truth_file, pred_file = files
    try:
        truth, pred = _load_mask_image(truth_file), _load_mask_image(pred_file)
    except DataError:
        return None
    if truth.size != pred.size:
        return None
    zero_one = (_is_zero_one(truth.histogram()), _is_zero_one(pred.histogram()))
    return _image_confusion(truth, pred, official), zero_one


def _usable_cpus() -> int:
    """CPU cores this process may run on (its affinity where the system reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _all_problems_error(
    problems: list[_Problem], truth_dir: Path, pred_dir: Path, every_file_failed: bool
) -> DataError:
    """One DataError listing every problem (the problem itself when there is only one)."""
    if len(problems) == 1:
        return problems[0].error
    lines = []
    for problem in problems:
        text = str(problem.error).replace("\n  fix:", "\n    fix:")
        lines.append(f"  - {text}")
    fix = "correct every file listed above, then run score again"
    if every_file_failed:
        fix += (
            " (every ground-truth file has a problem: check that TRUTH_DIR and PRED_DIR are the "
            "right folders, ground truth first)"
        )
    folder = truth_dir if all(p.in_truth for p in problems) else pred_dir
    message = f"{len(problems)} problems, nothing was scored:\n" + "\n".join(lines)
    return DataError(message, path=folder, fix=fix)


def score_dirs_scorer(
    truth_dir: Path | str,
    pred_dir: Path | str,
    workers: int | None = None,
    official: bool = False,
) -> SegmentationScorer:
    """Score a folder of predictions against a folder of ground truth (ISIC, PH2 or your own).

    Every file of ``truth_dir`` except ``ATTRIBUTION.txt``, ``LICENSE.txt`` and hidden files
    (names starting with ``.``) is a ground-truth mask. Its image id and prediction:

    * ISIC: a name that contains an ISIC id (``ISIC_`` + 7 digits) is matched exactly as
      ``isic_challenge_scoring.load_image.iter_image_pairs`` matches it: its prediction is the
      one file of ``pred_dir`` whose name (without extension) contains those 7 digits. ISIC
      2018 Task 2 attribute masks (``..._attribute_...``) are refused.
    * PH2 and your own folder: any other image file ``<id>[_segmentation|_lesion].<ext>`` has
      the image id ``<id>`` and is matched to the one file of ``pred_dir`` named
      ``<id>[_segmentation|_lesion].<ext>`` (any image extension), e.g. PH2's
      ``IMD002_lesion.bmp`` to ``IMD002_segmentation.png`` or ``IMD002.png``. A non-image file
      without an ISIC id is refused.

    Extra prediction files are ignored. Masks must be 8-bit greyscale or 1-bit, and a
    prediction must have its truth's height and width. Every file is checked before anything
    is scored: all problems (no or several predictions, wrong size, unreadable or non-mask
    file, two ground-truth files with one id) are reported together in one :class:`DataError`.

    Masks are binarised by :func:`~lessons_lib.metrics.binarise`, as the loaders read them: 0/255
    files exactly as the official scorer (lesion where > 128), and 0/1-valued files as 0/1 masks
    (the official scorer would read a 0/1 prediction as all background and score it 0);
    ``official=True`` reads every file as the official scorer does.

    Each mask file is decoded once; the pairs are decoded and counted on ``workers``
    processes (the result does not depend on how many), which a Ctrl-C stops cleanly
    (:func:`lessons_lib.parallel.parallel_map`).

    Args:
        truth_dir: Folder of ground-truth masks (the files themselves, not sub-folders).
        pred_dir: Folder of predicted masks.
        workers: Processes decoding the masks; default every usable CPU core
            (its CPU affinity). Fewer than 8 pairs are scored in this process.
        official: Lesion where a value is above 128 in every file, 0/1 masks included, exactly
            as ``isic-challenge-scoring``.

    Returns:
        A scorer holding one entry per truth file, in sorted file order; its attribute
        ``zero_one`` lists ``(image_id, "truth" | "prediction")`` for each 0/1 mask file read
        (the files on which the two rules differ).

    Raises:
        DataError: Naming the file at fault and the fix; with several problems, one error
            whose first line says how many and whose lines name each file.
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    truth_files = [
        p
        for p in _list_folder(truth_dir, "TRUTH_DIR")
        if p.name not in _IGNORED_TRUTH_FILES and not p.name.startswith(".")
    ]
    pred_files = _list_folder(pred_dir, "PRED_DIR")
    if not truth_files:
        raise DataError(
            "no ground-truth masks found in TRUTH_DIR",
            path=truth_dir,
            fix="pass the folder of ground-truth masks (ISIC's ..._Part1_GroundTruth, or a "
            "folder of <id>.png masks)",
        )
    # in truth-file order: a problem with the file's name, or (image id, truth, prediction)
    entries: list[_Problem | tuple[str, Path, Path | None]] = []
    owner: dict[str, Path] = {}
    for truth_file in truth_files:
        image_id, problem = _truth_id(truth_file)
        if problem is None and image_id in owner:
            problem = _Problem(
                DataError(
                    f"has the image id {image_id} of {owner[image_id].name} as well",
                    path=truth_file,
                    fix="keep one ground-truth mask per image in TRUTH_DIR",
                ),
                in_truth=True,
            )
        if problem is not None:
            entries.append(problem)
            continue
        owner[image_id] = truth_file
        candidates, _ = _candidates(image_id, pred_files)
        entries.append((image_id, truth_file, candidates[0] if len(candidates) == 1 else None))
    pairs = [(e[1], e[2]) for e in entries if isinstance(e, tuple) and e[2] is not None]
    # every pair decoded and counted once, in truth-file order, on the workers (Ctrl-C-safe)
    workers = _usable_cpus() if workers is None else workers
    count = partial(_pair_counts, official=official)
    computed = iter(parallel_map(count, pairs, workers, min_items=_MIN_PAIRS_IN_PARALLEL))
    zero_one: list[tuple[str, str]] = []
    problems: list[_Problem] = []
    n_failed = 0
    counts: dict[str, dict[str, int]] = {}
    for entry in entries:
        if isinstance(entry, _Problem):
            problems.append(entry)
            n_failed += 1
            continue
        image_id, truth_file, pred_file = entry
        pair = next(computed) if pred_file is not None else None
        found: list[_Problem] = []
        result = None
        if pair is not None:
            result, (truth_01, pred_01) = pair
            zero_one += [(image_id, "truth")] * truth_01 + [(image_id, "prediction")] * pred_01
        else:  # find out why, with every problem's message
            result, found = _score_one(truth_file, image_id, pred_dir, pred_files)
        problems += found
        n_failed += bool(found)
        if result is not None:
            counts[image_id] = result
    if problems:
        every_file_failed = n_failed == len(truth_files) > 1
        raise _all_problems_error(problems, truth_dir, pred_dir, every_file_failed)
    scorer = SegmentationScorer()
    for image_id, result in counts.items():
        scorer.add_counts(image_id, **result)
    scorer.zero_one = zero_one
    return scorer


def score_dirs(
    truth_dir: Path | str, pred_dir: Path | str, workers: int | None = None
) -> pd.DataFrame:
    """Per-image ISIC metrics of a prediction folder (rules and ``workers`` of
    :func:`score_dirs_scorer`).

    Returns:
        One row per image, index ``image_id``, columns ``accuracy, sensitivity, specificity,
        dice, jaccard, threshold_jaccard``. Its column means are the official macro averages.
    """
    return score_dirs_scorer(truth_dir, pred_dir, workers).per_image()


def score_dirs_summary(
    truth_dir: Path | str, pred_dir: Path | str, workers: int | None = None
) -> dict[str, float]:
    """:meth:`SegmentationScorer.summary` of a prediction folder (per-image means + pooled)."""
    return score_dirs_scorer(truth_dir, pred_dir, workers).summary()


def zero_one_note(zero_one: list[tuple[str, str]], official: bool) -> str | None:
    """The one-line note ``score`` prints when 0/1 mask files were read (``None`` if none)."""
    if not zero_one:
        return None
    kinds = sorted({kind for _, kind in zero_one}, reverse=True)
    what = f"{len(zero_one)} {' and '.join(kinds)} file(s) hold only 0 and 1"
    if official:
        return f"note: {what}: scored as the official scorer reads them, all background"
    return (
        f"note: {what}: read as lesion where 1; the official isic-challenge-scoring reads "
        "them as all background (--official scores as it does)"
    )


def main_score(
    truth_dir: Path | str, pred_dir: Path | str, as_json: bool = False, official: bool = False
) -> str:
    """Render the output of ``python -m lessons_lib score TRUTH_DIR PRED_DIR [--json]
    [--official]``.

    Args:
        truth_dir: Folder of ground-truth masks.
        pred_dir: Folder of predicted masks.
        as_json: Return JSON ``{"summary": {...}, "per_image": {id: {...}}}`` (with ``"note"``
            when 0/1 files were read) instead of text.
        official: Read every file as ``isic-challenge-scoring`` does (:func:`score_dirs_scorer`).

    Returns:
        The text to print.

    Raises:
        DataError: As :func:`score_dirs_scorer`.
    """
    scorer = score_dirs_scorer(truth_dir, pred_dir, official=official)
    per_image, summary = scorer.per_image(), scorer.summary()
    note = zero_one_note(scorer.zero_one, official)
    if as_json:
        rows = {i: {k: float(v) for k, v in row.items()} for i, row in per_image.iterrows()}
        found = {"note": note} if note else {}
        return json.dumps({"summary": summary, "per_image": rows, **found}, indent=2)
    lines = [
        *([note, ""] if note else []),
        f"{summary['n_images']} images; truth {truth_dir}, predictions {pred_dir}",
        "",
        per_image.to_string(float_format="{:.4f}".format),
        "",
        "Mean over images (ISIC 2017 ranks by jaccard, ISIC 2018 by threshold_jaccard):",
        *(f"  {name:<18} {summary[name]:.4f}" for name in METRIC_NAMES),
        "Pooled over all pixels of all images (as fastai's Dice/JaccardCoeff accumulate):",
        *(f"  {name:<18} {summary[f'pooled_{name}']:.4f}" for name in POOLED),
    ]
    return "\n".join(lines)
