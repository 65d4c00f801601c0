"""Score folders of ISIC mask files: the file-reading and command-line part of the metrics.

Masks are read and matched to their ground truth as ``isic-challenge-scoring``'s
``load_image.py`` does (see :func:`score_dirs_scorer`); :func:`main_score` renders
``python -m lessons_lib score TRUTH_DIR PRED_DIR [--json]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from lessons_lib.errors import DataError
from lessons_lib.metrics.functional import METRIC_NAMES, confusion
from lessons_lib.metrics.scorer import SegmentationScorer

__all__ = [
    "load_mask_file",
    "main_score",
    "score_dirs",
    "score_dirs_scorer",
    "score_dirs_summary",
]

_IGNORED_TRUTH_FILES = {"ATTRIBUTION.txt", "LICENSE.txt"}
_ISIC_ID = re.compile(r"ISIC_[0-9]{7}")


def load_mask_file(path: Path | str) -> np.ndarray:
    """Read a mask file as the official scorer does: 8-bit greyscale ('L'), or 1-bit converted.

    Args:
        path: Image file.

    Shape:
        Returns ``(H, W)`` uint8.

    Raises:
        DataError: If the file cannot be decoded or is not single-channel.
    """
    path = Path(path)
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
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"cannot read the mask image ({error})",
            path=path,
            fix="replace it with a valid 8-bit greyscale PNG",
        ) from error


def _match_prediction(truth_file: Path, image_id: str, pred_dir: Path) -> Path:
    """The single file of ``pred_dir`` whose stem contains the truth's 7-digit number."""
    number = image_id.split("_")[1]
    candidates = sorted(p for p in pred_dir.iterdir() if number in p.stem)
    if not candidates:
        raise DataError(
            f"no prediction for ground truth {truth_file.name}",
            path=pred_dir,
            fix=f"add a mask whose file name contains {number}, e.g. {image_id}_segmentation.png",
        )
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DataError(
            f"several predictions match ground truth {truth_file.name}: {names}",
            path=pred_dir,
            fix=f"keep exactly one file whose name contains {number}",
        )
    return candidates[0]


def score_dirs_scorer(truth_dir: Path | str, pred_dir: Path | str) -> SegmentationScorer:
    """Score a folder of predictions against a folder of ISIC ground truth.

    Files are matched as ``isic_challenge_scoring.load_image.iter_image_pairs`` matches them:
    every file of ``truth_dir`` except ``ATTRIBUTION.txt`` and ``LICENSE.txt`` must contain an
    ISIC id (``ISIC_`` + 7 digits); its prediction is the one file of ``pred_dir`` whose name
    (without extension) contains those 7 digits. Extra prediction files are ignored. Masks must
    be 8-bit greyscale or 1-bit, and a prediction must have its truth's height and width.
    ISIC 2018 Task 2 attribute masks (``..._attribute_...``) are refused.

    Masks are binarised by :func:`~lessons_lib.metrics.binarise`, as the loaders read them: 0/255
    files exactly as the official scorer (lesion where > 128), and 0/1-valued files as 0/1 masks
    (the official scorer would read a 0/1 prediction as all background and score it 0).

    Args:
        truth_dir: Folder of ground-truth masks.
        pred_dir: Folder of predicted masks.

    Returns:
        A scorer holding one entry per truth file, in sorted file order.

    Raises:
        DataError: Naming the file at fault, for every rule above.
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    for folder in (truth_dir, pred_dir):
        if not folder.is_dir():
            raise DataError("folder not found", path=folder, fix="pass an existing folder")
    scorer = SegmentationScorer()
    for truth_file in sorted(truth_dir.iterdir()):
        if truth_file.name in _IGNORED_TRUTH_FILES:
            continue
        match = _ISIC_ID.search(truth_file.stem)
        if match is None:
            raise DataError(
                "unknown ground-truth file: its name has no ISIC id (ISIC_ + 7 digits)",
                path=truth_file,
                fix="remove it from the ground-truth folder or rename it like ISIC_0012388.png",
            )
        if "attribute_" in truth_file.stem:
            raise DataError(
                "this is an ISIC 2018 Task 2 attribute mask; only lesion masks are scored here",
                path=truth_file,
                fix="point TRUTH_DIR at a Task 1 ground-truth folder",
            )
        pred_file = _match_prediction(truth_file, match.group(0), pred_dir)
        truth = load_mask_file(truth_file)
        pred = load_mask_file(pred_file)
        if pred.shape[:2] != truth.shape[:2]:
            raise DataError(
                f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground truth "
                f"{truth_file.name} is {truth.shape[1]}x{truth.shape[0]}",
                path=pred_file,
                fix="resize the prediction to the original image size (nearest neighbour)",
            )
        scorer.add_counts(match.group(0), **confusion(truth, pred))
    if not len(scorer):
        raise DataError("no ground-truth masks found", path=truth_dir, fix="check the path")
    return scorer


def score_dirs(truth_dir: Path | str, pred_dir: Path | str) -> pd.DataFrame:
    """Per-image ISIC metrics of a prediction folder (rules of :func:`score_dirs_scorer`).

    Returns:
        One row per image, index ``image_id``, columns ``accuracy, sensitivity, specificity,
        dice, jaccard, threshold_jaccard``. Its column means are the official macro averages.
    """
    return score_dirs_scorer(truth_dir, pred_dir).per_image()


def score_dirs_summary(truth_dir: Path | str, pred_dir: Path | str) -> dict[str, float]:
    """:meth:`SegmentationScorer.summary` of a prediction folder (per-image means + pooled)."""
    return score_dirs_scorer(truth_dir, pred_dir).summary()


def main_score(truth_dir: Path | str, pred_dir: Path | str, as_json: bool = False) -> str:
    """Render the output of ``python -m lessons_lib score TRUTH_DIR PRED_DIR [--json]``.

    Args:
        truth_dir: Folder of ground-truth masks.
        pred_dir: Folder of predicted masks.
        as_json: Return JSON ``{"summary": {...}, "per_image": {id: {...}}}`` instead of text.

    Returns:
        The text to print.

    Raises:
        DataError: As :func:`score_dirs_scorer`.
    """
    scorer = score_dirs_scorer(truth_dir, pred_dir)
    per_image, summary = scorer.per_image(), scorer.summary()
    if as_json:
        rows = {i: {k: float(v) for k, v in row.items()} for i, row in per_image.iterrows()}
        return json.dumps({"summary": summary, "per_image": rows}, indent=2)
    lines = [
        f"{summary['n_images']} images; truth {truth_dir}, predictions {pred_dir}",
        "",
        per_image.to_string(float_format="{:.4f}".format),
        "",
        "Mean over images (ISIC 2017 ranks by jaccard, ISIC 2018 by threshold_jaccard):",
        *(f"  {name:<18} {summary[name]:.4f}" for name in METRIC_NAMES),
        "Pooled over all pixels of all images (as fastai's Dice/JaccardCoeff accumulate):",
        f"  {'jaccard':<18} {summary['pooled_jaccard']:.4f}",
        f"  {'dice':<18} {summary['pooled_dice']:.4f}",
    ]
    return "\n".join(lines)
