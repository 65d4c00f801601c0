"""K-fold splits and probability averaging for cross-validated ensembles.

Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image
Segmentation with Enhanced Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health
Inform., 2017 (arXiv:1709.09780), Section III-B: "We used five-fold cross validation to evaluate
the performance of our model on the challenge training dataset [...]. When applying the trained
models onto the testing dataset, a bagging-type ensemble strategy was implemented to average the
outputs of the six models".

Reading of "the six models": the paper trains one model per fold (five, each on 4/5 of the 2000
training images) and says nothing else about a sixth. We read the sixth as one more model
trained on *all* training images with the same recipe (fixed iteration count, so it needs no
validation set). :func:`ensemble_splits` returns the six training sets in that order; the
probability maps of the six models are averaged with :func:`average_probs` *before*
thresholding (the dual-threshold post-processing runs on the average).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["average_probs", "ensemble_splits", "kfold_indices"]


def kfold_indices(n: int, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold split of ``range(n)``.

    The validation folds are disjoint, cover every index once, and differ in size by at most
    one; each fold's training indices are the other ``k - 1`` folds. Indices are sorted
    within each array.

    Args:
        n: Number of items (2000 ISIC 2017 training images in the paper).
        k: Number of folds (5 in the paper).
        seed: Seed of the shuffle (``numpy.random.default_rng``).

    Returns:
        ``k`` pairs ``(train_idx, valid_idx)`` of int64 arrays.

    Raises:
        ValueError: ``k < 2`` or ``k > n``.
    """
    if k < 2 or k > n:
        raise ValueError(f"need 2 <= k <= n, got k={k}, n={n}")
    perm = np.random.default_rng(seed).permutation(n)
    folds = [np.sort(f).astype(np.int64) for f in np.array_split(perm, k)]
    out = []
    for i, valid in enumerate(folds):
        train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        out.append((train, valid))
    return out


def ensemble_splits(
    n: int, k: int = 5, seed: int = 0, full: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The training/validation indices of the paper's ensemble: ``k`` fold models + one on all.

    Args:
        n: Number of training items.
        k: Number of folds.
        seed: Seed of the fold shuffle.
        full: Append the model trained on all ``n`` items (validation set empty), our reading of
            the paper's sixth model.

    Returns:
        ``k`` (or ``k + 1``) pairs ``(train_idx, valid_idx)``.
    """
    splits = kfold_indices(n, k, seed)
    if full:
        splits.append((np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    return splits


def average_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Average the probability maps of several models (the paper's bagging-type ensemble).

    Average probabilities, not logits and not binary masks: the average is then post-processed
    like a single model's output.

    Args:
        probs: One array per model, all of the same shape (numpy arrays or torch tensors).

    Shape:
        M arrays of shape S -> S.

    Returns:
        The element-wise mean, float32 (float64 if any input is float64).

    Raises:
        ValueError: empty sequence or shapes that differ.
    """
    if len(probs) == 0:
        raise ValueError("average_probs needs at least one probability map")
    arrays = [np.asarray(p.detach().cpu().numpy() if hasattr(p, "detach") else p) for p in probs]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"probability maps differ in shape: {sorted(shapes)}")
    dtype = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
    return np.mean(np.stack(arrays).astype(dtype, copy=False), axis=0)
