"""The one training path of the course (fastai): data loaders, callbacks, Learner and stages.

* :mod:`~lessons_lib.training.dataloaders`: :func:`segmentation_dls` for (image, mask) pairs;
* :mod:`~lessons_lib.training.callbacks`: :class:`PooledScore`, :class:`AtomicSaveModel`,
  :class:`HistoryCSV`, :class:`FreeGradients`, :func:`save_checkpoint`, the resume checkpoint
  of a stage and the stop on a non-finite loss (:class:`NonFiniteLossError`);
* :mod:`~lessons_lib.training.learner`: :func:`make_learner`, :func:`fit_stage` and
  :func:`lr_find` (fastai's range test, with no failure when the loss diverges at once);
* :mod:`~lessons_lib.training.distributed`: :func:`fit_distributed`, training on several GPUs
  (``make_learner(..., n_gpus=N)``; fastai's distributed support through Hugging Face accelerate).
"""

from lessons_lib.training.callbacks import (
    AtomicSaveModel,
    FreeGradients,
    HistoryCSV,
    NonFiniteLossError,
    PooledScore,
    save_checkpoint,
)
from lessons_lib.training.dataloaders import CODES, load_mask01, segmentation_dls
from lessons_lib.training.distributed import fit_distributed
from lessons_lib.training.learner import fit_stage, lr_find, make_learner

__all__ = [
    "CODES",
    "AtomicSaveModel",
    "FreeGradients",
    "HistoryCSV",
    "NonFiniteLossError",
    "PooledScore",
    "fit_distributed",
    "fit_stage",
    "lr_find",
    "load_mask01",
    "make_learner",
    "save_checkpoint",
    "segmentation_dls",
]
