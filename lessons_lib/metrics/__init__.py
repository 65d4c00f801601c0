"""ISIC challenge segmentation metrics, computed exactly as the official scorer computes them.

Re-implements the rules of the ``isic-challenge-scoring`` package (ISIC 2016-2018 lesion
segmentation) without depending on it: a mask pixel is lesion when its 8-bit value is ``> 128``;
each image gets accuracy, sensitivity, specificity, Dice, Jaccard and thresholded Jaccard (0
below 0.65); the challenge score is the mean over images. :class:`SegmentationScorer` also
reports every metric pooled over the set's pixels (fastai-style), which weights images by lesion
size, so a chapter never compares one kind of average with the other.

Layout, every public name re-exported here:

* :mod:`~lessons_lib.metrics.functional`: :func:`confusion`, :func:`score_pair`,
  :func:`scores_from_counts` and the per-image metric functions;
* :func:`binarise`, the mask rule, lives in :mod:`lessons_lib.masks` (the data readers use it
  too) and is re-exported here;
* :mod:`~lessons_lib.metrics.scorer`: :class:`SegmentationScorer`;
* :mod:`~lessons_lib.metrics.files`: :func:`load_mask_file`, ``score_dirs*`` and
  :func:`main_score` (folders of mask files and the ``score`` command);
* :mod:`~lessons_lib.metrics.statistics`: :func:`bootstrap_ci` (a mean with its confidence
  interval) and :func:`paired_difference` (two evaluations on the same images).
"""

from __future__ import annotations

from lessons_lib.masks import binarise
from lessons_lib.metrics.files import (
    load_mask_file,
    main_score,
    score_dirs,
    score_dirs_scorer,
    score_dirs_summary,
)
from lessons_lib.metrics.functional import (
    JACCARD_THRESHOLD,
    METRIC_LABELS,
    METRIC_NAMES,
    accuracy,
    confusion,
    dice,
    jaccard,
    score_pair,
    scores_from_counts,
    sensitivity,
    specificity,
    threshold_jaccard,
)
from lessons_lib.metrics.scorer import SegmentationScorer
from lessons_lib.metrics.statistics import (
    PairedDifference,
    bootstrap_ci,
    format_ci,
    paired_difference,
    pooled_bootstrap_ci,
)

__all__ = [
    "JACCARD_THRESHOLD",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "PairedDifference",
    "SegmentationScorer",
    "accuracy",
    "binarise",
    "bootstrap_ci",
    "confusion",
    "dice",
    "format_ci",
    "jaccard",
    "load_mask_file",
    "main_score",
    "paired_difference",
    "pooled_bootstrap_ci",
    "score_dirs",
    "score_dirs_scorer",
    "score_dirs_summary",
    "score_pair",
    "scores_from_counts",
    "sensitivity",
    "specificity",
    "threshold_jaccard",
]
