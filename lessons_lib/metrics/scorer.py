"""Accumulating scorer of the ISIC metrics over many images.

Per-image mean versus pooled. The ISIC challenges rank by the mean over images of a per-image
metric; fastai's ``Dice`` and ``JaccardCoeff`` metrics instead sum intersections and unions over
every pixel of the whole validation set and divide once. Pooling weights each image by its lesion
size, so a few large, easy lesions can hide many failed small ones; the per-image mean counts each
image once. The two numbers can differ a lot, and the thresholded mean differs again: paper 002
(Raghunath & Nofallah, ISIC 2018) reports a raw JA of 0.86 on its own 500-image split but a
thresholded JA of 0.71 on the official validation set. :class:`SegmentationScorer` reports both
kinds so a chapter never compares one with the other.
"""

from __future__ import annotations

import pandas as pd

from lessons_lib.metrics.functional import (
    JACCARD_THRESHOLD,
    METRIC_NAMES,
    confusion,
    scores_from_counts,
)

__all__ = ["COUNTS", "POOLED", "SegmentationScorer"]

COUNTS = ("tp", "fp", "tn", "fn")
"""The confusion counts kept per image (:meth:`SegmentationScorer.counts`' columns, and a
per-image CSV's beside the scores): what every metric, and every pooled score, is computed
from."""

POOLED = ("accuracy", "sensitivity", "specificity", "dice", "jaccard")
"""The metrics :meth:`SegmentationScorer.summary` also pools over the set (``pooled_<name>``);
the thresholded JA is a per-image rule and has no pooled form."""


class SegmentationScorer:
    """Accumulates per-image confusion counts (MONAI-style ``add`` / ``summary`` / ``reset``).

    ``summary()`` gives both averages, which answer different questions:

    * per-image means (``accuracy`` ... ``threshold_jaccard``): every image counts once; this is
      how the ISIC challenges rank;
    * ``pooled_jaccard`` / ``pooled_dice``: TP, FP and FN summed over all images, then one
      ratio, as fastai's ``Dice`` / ``JaccardCoeff`` accumulate over a validation set. Large
      lesions dominate it: it is higher than the per-image mean when the failures are small
      lesions, and lower when they are large ones.

    Args:
        threshold: Jaccard threshold of ``threshold_jaccard``.
    """

    def __init__(self, threshold: float = JACCARD_THRESHOLD) -> None:
        self.threshold = threshold
        self._counts: dict[str, dict[str, int]] = {}

    def reset(self) -> None:
        """Forget every image added so far."""
        self._counts.clear()

    def add(self, image_id: str, truth: object, pred: object) -> dict[str, float]:
        """Score one image and remember its counts.

        Args:
            image_id: Unique name of the image (e.g. ``"ISIC_0012388"``).
            truth: Ground-truth mask, conventions of :func:`confusion`.
            pred: Predicted mask of the same shape.

        Returns:
            The image's six metrics.

        Raises:
            ValueError: If ``image_id`` was already added, or on a shape mismatch.
        """
        return self.add_counts(image_id, **confusion(truth, pred))

    def add_counts(self, image_id: str, tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
        """Like :meth:`add`, from counts already computed."""
        if image_id in self._counts:
            raise ValueError(f"image {image_id!r} was already added to this scorer")
        self._counts[image_id] = {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}
        return scores_from_counts(tp, fp, tn, fn, threshold=self.threshold)

    def __len__(self) -> int:
        return len(self._counts)

    def counts(self) -> pd.DataFrame:
        """Confusion counts, one row per image (index ``image_id``, columns ``tp fp tn fn``)."""
        frame = pd.DataFrame.from_dict(self._counts, orient="index", columns=list(COUNTS))
        return frame.rename_axis("image_id").astype("int64")

    def per_image(self, counts: bool = False) -> pd.DataFrame:
        """The six metrics, one row per image in the order added (index named ``image_id``).

        Args:
            counts: Also the confusion counts, columns ``tp fp tn fn`` after the metrics
                (what a pooled score's confidence interval resamples,
                :func:`lessons_lib.metrics.statistics.pooled_bootstrap_ci`).
        """
        rows = {
            image_id: scores_from_counts(**c, threshold=self.threshold)
            for image_id, c in self._counts.items()
        }
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_NAMES))
        frame = frame.rename_axis("image_id").astype("float64")
        return frame.join(self.counts()) if counts else frame

    def summary(self) -> dict[str, float]:
        """Per-image means, pooled scores and the number of images.

        Returns:
            ``accuracy, sensitivity, specificity, dice, jaccard, threshold_jaccard`` (means over
            images); ``pooled_<metric>`` for each of :data:`POOLED`, one score from the summed
            confusion counts of every image (0/0 scores 1.0); and ``n_images``.

        Raises:
            ValueError: If no image was added.
        """
        if not self._counts:
            raise ValueError("no image was added to this scorer")
        result = {name: float(value) for name, value in self.per_image().mean().items()}
        pooled = scores_from_counts(**{k: sum(c[k] for c in self._counts.values()) for k in COUNTS})
        for name in POOLED:
            result[f"pooled_{name}"] = pooled[name]
        result["n_images"] = len(self._counts)
        return result
