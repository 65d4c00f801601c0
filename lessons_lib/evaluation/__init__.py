"""Evaluation the way the challenges score: predictions brought back to each image's original
size, post-processed, and scored against the original mask with the ISIC rules.

* :mod:`~lessons_lib.evaluation.evaluate`: :func:`evaluate` (one Learner or an ensemble),
  :func:`score_at_original` (the one scoring loop, shared with the classical baseline);
* :mod:`~lessons_lib.evaluation.postprocess`: probability map to mask (threshold, the
  dual-threshold method, hole filling, LesionSeg's threshold and opening);
* :mod:`~lessons_lib.evaluation.ensemble`: k-fold splits and probability averaging.
"""

from lessons_lib.evaluation.ensemble import average_probs, ensemble_splits, kfold_indices
from lessons_lib.evaluation.evaluate import (
    POSTPROCESS_AT,
    RESIZE_MODES,
    evaluate,
    predict_ensemble,
    predict_probs,
    score_at_original,
    select,
    thumbnail,
    to_size,
)
from lessons_lib.evaluation.postprocess import (
    FOOTPRINTS,
    dual_threshold,
    fill_holes,
    opening,
    threshold,
    threshold_and_open,
)

__all__ = [
    "FOOTPRINTS",
    "POSTPROCESS_AT",
    "RESIZE_MODES",
    "average_probs",
    "dual_threshold",
    "ensemble_splits",
    "evaluate",
    "fill_holes",
    "kfold_indices",
    "opening",
    "predict_ensemble",
    "predict_probs",
    "score_at_original",
    "select",
    "threshold",
    "threshold_and_open",
    "thumbnail",
    "to_size",
]
