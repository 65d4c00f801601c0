"""The one training path of the course (fastai): data loaders, callbacks, Learner and stages.

* :mod:`~lessons_lib.training.dataloaders`: :func:`segmentation_dls` for (image, mask) pairs;
* :mod:`~lessons_lib.training.callbacks`: :class:`PooledScore`, :class:`AtomicSaveModel`,
  :class:`HistoryCSV`, :func:`save_checkpoint`;
* :mod:`~lessons_lib.training.learner`: :func:`make_learner` and :func:`fit_stage`.
"""

from lessons_lib.training.callbacks import AtomicSaveModel, HistoryCSV, PooledScore, save_checkpoint
from lessons_lib.training.dataloaders import CODES, load_mask01, segmentation_dls
from lessons_lib.training.learner import fit_stage, make_learner

__all__ = [
    "CODES",
    "AtomicSaveModel",
    "HistoryCSV",
    "PooledScore",
    "fit_stage",
    "load_mask01",
    "make_learner",
    "save_checkpoint",
    "segmentation_dls",
]
