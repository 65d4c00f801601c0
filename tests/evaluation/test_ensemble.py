"""K-fold splits and probability averaging for the CDNN-29 six-model ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lessons_lib.evaluation.ensemble import average_probs, ensemble_splits, kfold_indices


@pytest.mark.parametrize(("n", "k"), [(2000, 5), (23, 5), (10, 10)])
def test_kfold_valid_folds_partition_the_items(n, k):
    folds = kfold_indices(n, k, seed=3)
    assert len(folds) == k
    valid = np.concatenate([v for _, v in folds])
    assert np.array_equal(np.sort(valid), np.arange(n))  # disjoint and covering
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, v in folds:
        assert len(np.intersect1d(train, v)) == 0
        assert np.array_equal(np.union1d(train, v), np.arange(n))
        assert train.dtype == np.int64


def test_kfold_is_seeded_and_shuffled():
    a, b, c = kfold_indices(100, seed=0), kfold_indices(100, seed=0), kfold_indices(100, seed=1)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0][1], np.arange(20))  # not contiguous blocks


def test_kfold_rejects_bad_k():
    for n, k in [(3, 5), (10, 1)]:
        with pytest.raises(ValueError, match=f"need 2 <= k <= n, got k={k}, n={n}"):
            kfold_indices(n, k)


def test_six_models_five_folds_plus_full():
    splits = ensemble_splits(50)
    assert len(splits) == 6
    train, valid = splits[-1]
    assert np.array_equal(train, np.arange(50)) and len(valid) == 0
    assert len(ensemble_splits(50, full=False)) == 5


def test_average_probs():
    a = np.zeros((2, 3), dtype=np.float32)
    b = np.ones((2, 3), dtype=np.float32)
    c = torch.full((2, 3), 0.5)
    out = average_probs([a, b, c])
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out, 0.5)
    assert average_probs([np.array([0.2]), np.array([0.4])]).dtype == np.float64
    # the library's own messages: numpy's stack would raise a ValueError here anyway
    with pytest.raises(ValueError, match="needs at least one probability map"):
        average_probs([])
    with pytest.raises(ValueError, match=r"differ in shape: \[\(2, 3\), \(3, 2\)\]"):
        average_probs([a, np.zeros((3, 2))])
