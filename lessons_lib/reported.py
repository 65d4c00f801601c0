"""A paper's reported numbers, each with how it was computed, and which of our scores is
computed the same way.

A number is only comparable with ours when both average the same way (per image, pooled over
the set's pixels, or per mini-batch) at the same resolution. Each recipe declares its paper's
numbers once (:attr:`lessons_lib.recipes.Recipe.reported`) as :class:`Reported` entries; a
chapter attaches those of the evaluation it scored (:meth:`Recipe.reported_for`), and
:func:`lessons_lib.record.comparison_rows` subtracts only where :func:`matching_metric` names a
score of ours computed the same way; anywhere else the paper's number stands alone, with what
it is.

The averaging of our scores (:meth:`lessons_lib.metrics.SegmentationScorer.summary`, always at
each image's original size):

* ``jaccard``, ``threshold_jaccard``, ``dice``, ``accuracy``, ``sensitivity``, ``specificity``:
  the mean over images of each image's score, as the ISIC challenges rank (``per_image``);
* ``pooled_<metric>``: one score from the confusion counts of every pixel of the set
  (``pooled``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AVERAGING = {
    "per_image": "mean over images of each image's score",
    "pooled": "one score over all pixels of the set",
    "per_batch": "mean over mini-batches of each batch's pooled score",
}
"""How a reported number averages, with the words tables print for it."""

PAPER_METRICS = ("jaccard", "threshold_jaccard", "dice", "accuracy", "sensitivity", "specificity")
"""The metrics a paper may report: the ISIC challenges' (JA, thresholded JA, DI, AC, SE, SP)."""

ORIGINAL = "original"
"""Resolution of a score computed on each image at its original size (ours always are)."""

NOT_STATED = "not stated"
"""Resolution of a score whose paper does not say at what size it was computed."""


@dataclass(frozen=True)
class Reported:
    """One number a paper reports, and how it was computed.

    Args:
        metric: One of :data:`PAPER_METRICS`.
        value: The number as printed.
        averaging: One of :data:`AVERAGING`: how the paper averaged it, as established from its
            text or tables (``note`` says how).
        resolution: :data:`ORIGINAL`, :data:`NOT_STATED`, or the size it was computed at
            (``"1024x1024"``).
        dataset: The dataset key it was measured on (``"isic2017"``).
        split: Which of the dataset's images: ``test``, ``valid``, or a chapter's own name for
            another set (``random_split``).
        source: Where in the paper (``"Table 1"``, ``"Sec. 3"``).
        variant: The method variant it belongs to (a table's row), ``None`` for the paper's
            method.
        note: How the averaging and resolution were established, where it is not stated.
    """

    metric: str
    value: float
    averaging: str
    resolution: str
    dataset: str
    split: str
    source: str
    variant: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.metric not in PAPER_METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; valid: {', '.join(PAPER_METRICS)}")
        if self.averaging not in AVERAGING:
            raise ValueError(f"unknown averaging {self.averaging!r}; valid: {', '.join(AVERAGING)}")
        if not isinstance(self.value, int | float) or not math.isfinite(self.value):
            raise ValueError(f"{self.metric}: value must be a finite number, not {self.value!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``metrics.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reported:
        """The inverse of :meth:`as_dict`; unknown or missing fields are a ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @property
    def computed_as(self) -> str:
        """How it was computed, in words: ``"pooled, at original size"``."""
        at = {ORIGINAL: "at original size", NOT_STATED: "resolution not stated"}
        where = at.get(self.resolution, f"at {self.resolution}")
        return f"{self.averaging.replace('_', ' ')}, {where}"


def matching_metric(reported: Reported) -> str | None:
    """The key of our score (in a result's ``metrics``) computed as ``reported`` was, or
    ``None`` when none of ours is.

    Ours are at original size, so a number computed at another size matches none; one whose
    paper states no size is matched on its averaging alone (and its row says so). A per-image
    number matches our per-image mean, a pooled one our pooled score, a per-batch one none.
    """
    if reported.resolution not in (ORIGINAL, NOT_STATED):
        return None
    if reported.averaging == "per_image":
        return reported.metric
    if reported.averaging == "pooled" and reported.metric != "threshold_jaccard":
        return f"pooled_{reported.metric}"
    return None


def row(values: Mapping[str, float], **common: Any) -> tuple[Reported, ...]:
    """A table row of a paper: one :class:`Reported` per ``{metric: value}``, the other fields
    (``averaging``, ``resolution``, ``dataset``, ``split``, ``source``, ...) shared."""
    return tuple(Reported(metric, value, **common) for metric, value in values.items())
