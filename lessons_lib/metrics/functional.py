"""Per-image ISIC segmentation metrics, computed exactly as the official scorer computes them.

The ISIC 2016-2018 lesion-segmentation challenges were scored by the ``isic-challenge-scoring``
package (https://github.com/ImageMarkup/isic-challenge-scoring, ``segmentation.py``,
``metrics.py``, ``confusion.py``, ``load_image.py``). This module re-implements its rules without
depending on it (the tests check the two agree to 1e-12):

* a mask pixel is lesion when its 8-bit value is ``> 128`` (so 128 is background, 129 lesion;
  the rule is :func:`lessons_lib.masks.binarise`, which the data readers share);
* per image: accuracy, sensitivity, specificity, Jaccard (JA), Dice (DI) and thresholded Jaccard
  (JA below 0.65 scores 0, the ISIC 2018 ranking metric); a ratio whose denominator is 0 scores
  1.0 (empty truth: sensitivity 1; full truth: specificity 1; empty truth *and* empty
  prediction: JA = DI = 1);
* the challenge score is the **mean over images** of a per-image metric (2017 ranked by mean JA,
  2018 by mean thresholded JA; Codella et al., arXiv:1710.05006 and arXiv:1902.03368).
"""

from __future__ import annotations

import numpy as np

from lessons_lib.masks import binarise

__all__ = [
    "JACCARD_THRESHOLD",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "accuracy",
    "confusion",
    "dice",
    "jaccard",
    "score_pair",
    "scores_from_counts",
    "sensitivity",
    "specificity",
    "threshold_jaccard",
]

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "dice", "jaccard", "threshold_jaccard")
"""Column order of every per-image table."""

JACCARD_THRESHOLD = 0.65
"""ISIC 2018 Task 1: an image whose Jaccard index is below this scores 0."""

METRIC_LABELS = {
    "jaccard": "JA",
    "threshold_jaccard": "thresholded JA",
    "dice": "Dice",
    "accuracy": "AC",
    "sensitivity": "SE",
    "specificity": "SP",
    "pooled_jaccard": "pooled JA",
    "pooled_dice": "pooled Dice",
    "pooled_accuracy": "pooled AC",
    "pooled_sensitivity": "pooled SE",
    "pooled_specificity": "pooled SP",
}
"""Short names of the metrics, as the challenge reports and the papers' tables print them."""


def confusion(truth: object, pred: object) -> dict[str, int]:
    """Count the pixels of the binary confusion matrix of one image.

    Args:
        truth: Ground-truth mask. ``bool`` arrays are used as-is; integer arrays whose values
            all lie in {0, 1} are 0/1 masks; any other integer array is binarised with
            ``> 128`` like the official scorer. Float arrays raise ``TypeError``.
        pred: Predicted mask, same shape and conventions.

    Shape:
        truth, pred: ``(H, W)``, equal.

    Returns:
        ``{"tp": ..., "fp": ..., "tn": ..., "fn": ...}`` as Python ints.

    Raises:
        ValueError: If the shapes differ (both are named) or a mask is not 2-D.
    """
    truth_shape, pred_shape = np.shape(truth), np.shape(pred)
    if truth_shape != pred_shape:
        raise ValueError(f"shape mismatch: truth {truth_shape} vs prediction {pred_shape}")
    t = binarise(truth, "truth")
    p = binarise(pred, "prediction")
    tp = int(np.count_nonzero(t & p))
    n_truth, n_pred = int(np.count_nonzero(t)), int(np.count_nonzero(p))
    fn, fp = n_truth - tp, n_pred - tp
    return {"tp": tp, "fp": fp, "tn": t.size - tp - fn - fp, "fn": fn}


def scores_from_counts(
    tp: int, fp: int, tn: int, fn: int, threshold: float = JACCARD_THRESHOLD
) -> dict[str, float]:
    """The six ISIC metrics from confusion counts, with the official scorer's conventions.

    Args:
        tp: True positives (lesion pixels predicted lesion).
        fp: False positives.
        tn: True negatives.
        fn: False negatives.
        threshold: Jaccard values below this make ``threshold_jaccard`` 0.

    Returns:
        Dict with keys :data:`METRIC_NAMES`; a 0/0 ratio scores 1.0 as in ``metrics.py`` of
        ``isic-challenge-scoring``.
    """
    jaccard = 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "sensitivity": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp),
        "dice": 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "jaccard": jaccard,
        "threshold_jaccard": jaccard if jaccard >= threshold else 0.0,
    }


def score_pair(
    truth: object, pred: object, threshold: float = JACCARD_THRESHOLD
) -> dict[str, float]:
    """All six ISIC metrics of one image (same arguments as :func:`confusion`).

    Returns:
        Dict with keys ``accuracy, sensitivity, specificity, dice, jaccard, threshold_jaccard``.
    """
    return scores_from_counts(**confusion(truth, pred), threshold=threshold)


def accuracy(truth: object, pred: object) -> float:
    """Pixel accuracy (TP + TN) / all pixels of one image."""
    return score_pair(truth, pred)["accuracy"]


def sensitivity(truth: object, pred: object) -> float:
    """TP / (TP + FN); 1.0 when the truth has no lesion pixel."""
    return score_pair(truth, pred)["sensitivity"]


def specificity(truth: object, pred: object) -> float:
    """TN / (TN + FP); 1.0 when the truth is lesion everywhere."""
    return score_pair(truth, pred)["specificity"]


def dice(truth: object, pred: object) -> float:
    """Dice 2TP / (2TP + FP + FN); 1.0 when truth and prediction are both empty."""
    return score_pair(truth, pred)["dice"]


def jaccard(truth: object, pred: object) -> float:
    """Jaccard (IoU) TP / (TP + FP + FN); 1.0 when truth and prediction are both empty."""
    return score_pair(truth, pred)["jaccard"]


def threshold_jaccard(truth: object, pred: object, threshold: float = JACCARD_THRESHOLD) -> float:
    """Jaccard, or 0.0 when it is below ``threshold`` (ISIC 2018 ranking metric)."""
    return score_pair(truth, pred, threshold=threshold)["threshold_jaccard"]
