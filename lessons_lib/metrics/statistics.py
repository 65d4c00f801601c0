"""How sure a mean score is, and whether two methods differ on the same images.

Every chapter writes each evaluation's per-image scores (``per_image_<evaluation>.csv``); these
functions read them as ``pandas`` Series indexed by image id:

* :func:`bootstrap_ci`: a per-image mean metric (JA, thresholded JA, Dice ...) with its 95%
  bootstrap confidence interval, the images resampled with replacement (``scipy.stats.bootstrap``,
  percentile method, 2000 resamples, seeded);
* :func:`pooled_bootstrap_ci`: a pooled score (one ratio of the confusion counts summed over the
  images, as :class:`~lessons_lib.metrics.scorer.SegmentationScorer` pools) with its interval,
  the images resampled the same way, each carrying its four counts;
* :func:`paired_difference`: two evaluations *on the same images* (matched by image id): the mean
  per-image difference with its bootstrap interval and the Wilcoxon signed-rank test's p-value
  (``scipy.stats.wilcoxon``, zero differences split between the ranks, ``zsplit``).

One definition for the whole course: the leaderboard, chapter 004's fusion comparison and the
chapters' ablations call these. Efron & Tibshirani, *An Introduction to the Bootstrap* (1993),
ch. 13 (percentile intervals); Wilcoxon, *Individual comparisons by ranking methods* (1945).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lessons_lib.metrics.functional import scores_from_counts
from lessons_lib.metrics.scorer import COUNTS, POOLED

__all__ = [
    "CONFIDENCE",
    "METHOD",
    "N_RESAMPLES",
    "PairedDifference",
    "bootstrap_ci",
    "format_ci",
    "paired_difference",
    "pooled_bootstrap_ci",
]

CONFIDENCE = 0.95
"""Confidence level of every interval."""

N_RESAMPLES = 2000
"""Bootstrap resamples of every interval."""

METHOD = "percentile"
"""``scipy.stats.bootstrap``'s method: the 2.5th and 97.5th percentiles of the resampled means
(BCa would correct for skew, but is undefined when every resample has the same mean)."""


def bootstrap_ci(
    values: pd.Series | np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The mean of ``values`` and its bootstrap confidence interval.

    Args:
        values: One score per image (NaN entries are dropped).
        n_resamples: Resamples of the images.
        confidence: Confidence level.
        seed: Seed of the resampling: the same inputs give the same interval.

    Returns:
        ``(mean, low, high)``; the interval is ``(nan, nan)`` for fewer than two images.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    if np.all(x == x[0]):  # every resample has this mean: scipy would warn of a degenerate case
        return mean, mean, mean
    result = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=METHOD,
        rng=np.random.default_rng(seed),
    )
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _pooled(metric: str, *counts: np.ndarray) -> float:
    """``metric`` of ``tp, fp, tn, fn`` summed over the images: the scorer's own pooled score
    (:func:`lessons_lib.metrics.functional.scores_from_counts`, 0/0 scoring 1)."""
    return scores_from_counts(*(float(c.sum()) for c in counts))[metric]


def pooled_bootstrap_ci(
    counts: pd.DataFrame,
    metric: str = "jaccard",
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A pooled score and its bootstrap confidence interval, the images resampled.

    A pooled score is one ratio of counts summed over all images (large lesions weigh more),
    so it is not the mean of anything per image; its uncertainty still comes from which images
    were drawn. Each resample draws the images with replacement, each with its four counts
    (``scipy.stats.bootstrap`` with ``paired=True``), and recomputes the pooled score: the
    same method, resamples and seed as :func:`bootstrap_ci`.

    Args:
        counts: One row per image with integer columns ``tp, fp, tn, fn`` (the per-image CSVs
            of chapter runs have them beside the scores).
        metric: ``jaccard``, ``dice``, ``sensitivity``, ``specificity`` or ``accuracy``.
        n_resamples: Resamples of the images.
        confidence: Confidence level.
        seed: Seed of the resampling.

    Returns:
        ``(pooled score, low, high)``; the interval is ``(nan, nan)`` for fewer than two images.

    Raises:
        ValueError: an unknown ``metric``, or ``counts`` without the four count columns.
    """
    if metric not in POOLED:
        raise ValueError(f"unknown pooled metric {metric!r}; valid: {', '.join(POOLED)}")
    missing = [c for c in COUNTS if c not in counts.columns]
    if missing:
        raise ValueError(f"no confusion counts {missing} per image: a pooled score needs them")
    data = tuple(counts[c].to_numpy(dtype=float) for c in COUNTS)
    score = float(_pooled(metric, *data))
    if len(counts) < 2:
        return score, math.nan, math.nan
    resampled = np.stack(data)  # degenerate when every image has the same counts
    if np.all(resampled == resampled[:, :1]):
        return score, score, score
    result = stats.bootstrap(
        data,
        lambda *c: _pooled(metric, *c),  # one resample at a time: 2000 calls, milliseconds
        paired=True,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=METHOD,
        rng=np.random.default_rng(seed),
    )
    return score, float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class PairedDifference:
    """Two evaluations compared image by image: ``b - a`` on the images both scored.

    Args:
        n: Images both scored (matched by image id).
        mean: Mean per-image difference, ``b - a``.
        low: Lower end of its bootstrap confidence interval.
        high: Upper end.
        p_value: Wilcoxon signed-rank test, two-sided (NaN when every difference is 0).
        better: Share of the images on which ``b`` scores higher.
        worse: Share on which it scores lower.
    """

    n: int
    mean: float
    low: float
    high: float
    p_value: float
    better: float
    worse: float

    def __str__(self) -> str:
        return (
            f"{format_ci(self.mean, self.low, self.high, sign=True)} over {self.n} images, "
            f"Wilcoxon p = {self.p_value:.3g}; better on {self.better:.0%}, worse on "
            f"{self.worse:.0%}"
        )


def paired_difference(
    a: pd.Series,
    b: pd.Series,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> PairedDifference:
    """``b - a`` image by image, on the image ids both Series hold.

    Args:
        a: One score per image, indexed by image id (the reference, e.g. the baseline).
        b: The same metric of the other evaluation.
        n_resamples: Bootstrap resamples of the mean difference.
        confidence: Confidence level.
        seed: Seed of the resampling.

    Returns:
        A :class:`PairedDifference`.

    Raises:
        ValueError: the two share no image id (they were scored on different images: nothing
            to pair).
    """
    common = a.index.intersection(b.index)
    diff = (b.loc[common].astype(float) - a.loc[common].astype(float)).dropna()
    if diff.empty:
        raise ValueError("the two evaluations share no image: they cannot be compared pairwise")
    mean, low, high = bootstrap_ci(diff, n_resamples, confidence, seed)
    nonzero = diff[diff != 0]
    p_value = (
        float(stats.wilcoxon(diff, zero_method="zsplit").pvalue)
        if len(nonzero) and len(diff) > 1
        else math.nan
    )
    return PairedDifference(
        n=len(diff),
        mean=mean,
        low=low,
        high=high,
        p_value=p_value,
        better=float((diff > 0).mean()),
        worse=float((diff < 0).mean()),
    )


def format_ci(mean: float, low: float, high: float, digits: int = 3, sign: bool = False) -> str:
    """``"0.781 [0.765, 0.797]"`` (``sign``: ``"+0.012 [-0.004, +0.027]"``); the mean alone when
    there is no interval."""
    form = f"{{:{'+' if sign else ''}.{digits}f}}"
    if math.isnan(mean):
        return ""
    if math.isnan(low) or math.isnan(high):
        return form.format(mean)
    return f"{form.format(mean)} [{form.format(low)}, {form.format(high)}]"
