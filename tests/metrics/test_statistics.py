"""lessons_lib.metrics.statistics: bootstrap intervals and paired comparisons, checked against
hand-computed cases and against scipy on the same inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lessons_lib.metrics.scorer import SegmentationScorer
from lessons_lib.metrics.statistics import (
    N_RESAMPLES,
    bootstrap_ci,
    format_ci,
    paired_difference,
    pooled_bootstrap_ci,
)


def test_a_hand_computed_interval() -> None:
    """Two images scoring 0 and 1: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2,
    1/4, so the 2.5th and 97.5th percentiles of 2000 resampled means are 0 and 1."""
    assert bootstrap_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)
    assert bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7, 0.7))  # no spread, no width
    mean, low, high = bootstrap_ci([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)  # one image: no interval
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.2, np.nan, 0.4])[0] == pytest.approx(0.3)  # NaN dropped


def test_the_interval_is_scipys_percentile_bootstrap_of_the_mean() -> None:
    x = np.random.default_rng(1).beta(5, 2, size=150)  # per-image JA-like scores
    mean, low, high = bootstrap_ci(pd.Series(x), seed=7)
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert (low, high) == (ref.low, ref.high) and mean == x.mean()
    assert low < mean < high
    # seeded: the same interval every time; about 1.96 standard errors either side
    assert bootstrap_ci(x, seed=7) == (mean, low, high)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert (high - low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.1)


def test_paired_difference_matches_scipy_on_the_shared_images() -> None:
    rng = np.random.default_rng(2)
    ids = [f"ISIC_{i:07d}" for i in range(80)]
    a = pd.Series(rng.beta(4, 2, 80), index=ids)
    b = (a + rng.normal(0.02, 0.05, 80)).clip(0, 1)
    b["only_in_b"] = 1.0  # an image the other did not score: not paired
    result = paired_difference(a, b, seed=3)
    diff = (b.loc[ids] - a).to_numpy()
    assert result.n == 80 and result.mean == pytest.approx(diff.mean())
    assert result.p_value == stats.wilcoxon(diff, zero_method="zsplit").pvalue
    ref = stats.bootstrap(
        (diff,), np.mean, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert (result.low, result.high) == pytest.approx((ref.low, ref.high), rel=0, abs=1e-15)
    assert result.better == pytest.approx((diff > 0).mean())
    assert result.better + result.worse <= 1
    assert "over 80 images, Wilcoxon p = " in str(result)


def test_paired_difference_of_equal_or_disjoint_evaluations() -> None:
    a = pd.Series([0.5, 0.6, 0.7], index=["x", "y", "z"])
    same = paired_difference(a, a)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and math.isnan(same.p_value)
    shifted = paired_difference(a, a + 0.1)
    assert shifted.mean == pytest.approx(0.1) and shifted.better == 1.0
    with pytest.raises(ValueError, match="share no image"):
        paired_difference(a, pd.Series([0.5], index=["other"]))


def test_format_ci() -> None:
    assert format_ci(0.78123, 0.7651, 0.7969) == "0.781 [0.765, 0.797]"
    assert format_ci(0.012, -0.004, 0.027, sign=True) == "+0.012 [-0.004, +0.027]"
    assert format_ci(0.5, math.nan, math.nan) == "0.500" and format_ci(math.nan, 0, 1) == ""


def test_a_hand_computed_pooled_interval() -> None:
    """Two images: one all right (tp 3), one all wrong (fp 1). Pooled JA 3/4; a resample is
    both (3/4), the first twice (1) or the second twice (0), with chances 1/2, 1/4, 1/4, so
    the 2.5th and 97.5th percentiles of 2000 resamples are 0 and 1."""
    counts = pd.DataFrame({"tp": [3, 0], "fp": [0, 1], "tn": [5, 7], "fn": [0, 0]})
    assert pooled_bootstrap_ci(counts) == (0.75, 0.0, 1.0)
    one = pooled_bootstrap_ci(counts.iloc[:1])
    assert one[0] == 1.0 and math.isnan(one[1]) and math.isnan(one[2])
    assert pooled_bootstrap_ci(pd.concat([counts.iloc[:1]] * 3)) == (1.0, 1.0, 1.0)
    assert pooled_bootstrap_ci(counts, "accuracy")[0] == pytest.approx(15 / 16)
    with pytest.raises(ValueError, match="unknown pooled metric"):
        pooled_bootstrap_ci(counts, "threshold_jaccard")  # a per-image rule: no pooled form
    with pytest.raises(ValueError, match="confusion counts"):
        pooled_bootstrap_ci(counts.drop(columns="tn"))


def test_the_pooled_interval_is_scipys_paired_bootstrap_of_the_scorers_pooled_score() -> None:
    """The pooled score is the scorer's own; the interval is scipy's percentile bootstrap of
    that score with the images (and their four counts) resampled together."""
    rng = np.random.default_rng(3)
    scorer = SegmentationScorer()
    for i in range(60):
        truth = rng.random((16, 16)) < rng.uniform(0.05, 0.6)
        pred = truth ^ (rng.random((16, 16)) < rng.uniform(0.0, 0.4))
        scorer.add(f"im{i}", truth, pred)
    counts = scorer.per_image(counts=True)
    for metric in ("jaccard", "dice", "sensitivity"):
        score, low, high = pooled_bootstrap_ci(counts, metric, seed=5)
        assert score == pytest.approx(scorer.summary()[f"pooled_{metric}"])

        def pooled(tp, fp, tn, fn, axis=-1, metric=metric):
            tp, fp, tn, fn = (c.sum(axis=axis) for c in (tp, fp, tn, fn))
            return {"jaccard": tp / (tp + fp + fn), "dice": 2 * tp / (2 * tp + fp + fn)}.get(
                metric, tp / (tp + fn)
            )

        ref = stats.bootstrap(
            tuple(counts[c].to_numpy(float) for c in ("tp", "fp", "tn", "fn")),
            pooled,
            paired=True,
            vectorized=True,
            n_resamples=N_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(5),
        ).confidence_interval
        assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)
        assert low < score < high
