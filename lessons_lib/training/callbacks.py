"""fastai callbacks and metrics of the training path: a pooled score per epoch, atomic
best-epoch checkpoints, and an epoch-by-epoch history CSV.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fastai.callback.core import Callback
from fastai.callback.tracker import SaveModelCallback
from fastai.learner import Learner, Metric, save_model

from lessons_lib.atomic import atomic_path, write_with
from lessons_lib.losses.base import foreground


class PooledScore(Metric):
    """Dice or Jaccard over the whole validation set (pooled), for the per-epoch table.

    Works for 1-channel (sigmoid) and 2-channel (softmax) outputs alike, through the loss's
    declared ``activation`` (a loss without one is an error). Pooled scores are what fastai
    reports; the challenges average per image (:mod:`lessons_lib.metrics` has both, and the
    chapters evaluate with the latter).

    Args:
        kind: ``"dice"`` or ``"jaccard"``.
        threshold: Foreground probability threshold.
    """

    def __init__(self, kind: str = "dice", threshold: float = 0.5):
        if kind not in ("dice", "jaccard"):
            raise ValueError(f"unknown kind {kind!r}; valid: dice, jaccard")
        self.kind, self.threshold = kind, threshold

    def reset(self) -> None:
        self.inter, self.total = 0.0, 0.0

    def accumulate(self, learn) -> None:
        activation = getattr(learn.loss_func, "activation", None)
        if activation is None:
            raise TypeError(
                f"loss {type(learn.loss_func).__name__} declares no output activation: use a "
                "lessons_lib.losses loss (a SegmentationLoss), whose activation turns outputs "
                "into probabilities"
            )
        pred = foreground(activation(learn.pred.float())) > self.threshold
        targ = learn.y.reshape(pred.shape) > 0
        self.inter += (pred & targ).sum().item()
        self.total += pred.sum().item() + targ.sum().item()

    @property
    def value(self) -> float | None:
        if self.total == 0:
            return None
        if self.kind == "dice":
            return 2 * self.inter / self.total
        return self.inter / (self.total - self.inter)

    @property
    def name(self) -> str:
        return f"pooled_{self.kind}"


class AtomicSaveModel(SaveModelCallback):
    """fastai's ``SaveModelCallback`` (keep the best epoch, reload it at the end), but the
    checkpoint is written atomically, so an interrupted run never leaves a broken file."""

    def _save(self, name: str) -> None:
        self.last_saved_path = save_checkpoint(self.learn, name, self.with_opt)


def save_checkpoint(learn: Learner, name: str, with_opt: bool = False) -> Path:
    """Atomically save the Learner's model as ``<path>/models/<name>.pth`` (fastai's format)."""
    dest = Path(learn.path) / learn.model_dir / f"{name}.pth"
    with atomic_path(dest) as tmp:
        save_model(tmp, learn.model, getattr(learn, "opt", None), with_opt)
    return dest


class HistoryCSV(Callback):
    """Rewrites ``<out>/history.csv`` atomically after every epoch (all stages, all fits).

    Args:
        path: The CSV file.
        stage: Label of the current stage (set by :func:`fit_stage`).
    """

    order = 60  # after the Recorder has the epoch's values

    def __init__(self, path: Path, stage: str = "fit"):
        self.path, self.stage, self.rows = Path(path), stage, []

    def before_epoch(self) -> None:
        self.trained = False

    def after_train(self) -> None:
        self.trained = not hasattr(self.learn, "lr_finder")  # the LR range test is not training

    def after_epoch(self) -> None:
        if not getattr(self, "trained", False):  # prediction (get_preds) also runs epochs
            return
        self.trained = False
        names = [n for n in self.recorder.metric_names[1:-1]]
        values = self.recorder.log[1:-1]
        row = {"stage": self.stage, "epoch": self.epoch, **dict(zip(names, values, strict=False))}
        row["lr"] = float(self.opt.hypers[-1]["lr"])
        self.rows.append(row)
        frame = pd.DataFrame(self.rows)
        write_with(self.path, lambda p: frame.to_csv(p, index=False))
