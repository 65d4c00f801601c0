"""fastai callbacks and metrics of the training path: a pooled score per epoch, atomic
best-epoch checkpoints, an epoch-by-epoch history CSV, the per-epoch resume checkpoint (model,
optimiser and tracker state), the stop on a non-finite loss and gradients freed after each step.

Only the main process writes files: under distributed training (``rank_distrib() > 0``) the
other processes train but write nothing.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner, Metric, save_model
from fastai.torch_core import rank_distrib

from lessons_lib.atomic import atomic_path, write_json, write_with
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
        # under distributed training every process counts every image (fastai gathers the
        # batches of all processes and drops the padding repeats)
        pred, targ = learn.to_detach((pred.to(torch.uint8), targ.to(torch.uint8)), cpu=False)
        pred, targ = pred.bool(), targ.bool()
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


class FreeGradients(Callback):
    """Frees the gradients after each optimiser step (``param.grad = None``), as PyTorch's own
    ``Optimizer.zero_grad`` does by default; fastai's zeroes them in place instead.

    Why: a gradient kept between steps is accumulated into, and autograd first builds the new
    one in full beside it. For a parameter used only in part (chapter 004's fc6 on inputs whose
    pool5 is smaller than its 7x7 kernel, 411 MB) that briefly held two copies; freed, the
    backward pass writes its gradients straight into place. The arithmetic is the same: the
    step reads ``param.grad`` before this runs, and gradient accumulation over several batches
    (fastai's ``GradientAccumulation``) is untouched, since no step happens between them.
    """

    order = 90  # after every callback that reads the step's gradients

    def after_step(self) -> None:
        for p in self.learn.model.parameters():
            p.grad = None


class AtomicSaveModel(SaveModelCallback):
    """fastai's ``SaveModelCallback`` (keep the best epoch, reload it at the end), but the
    checkpoint is written atomically, so an interrupted run never leaves a broken file.

    Args:
        best: The best monitored value of the epochs an interrupted run already trained (a
            resumed stage continues comparing against it); ``None`` starts afresh.
        **kwargs: Of ``SaveModelCallback`` (``monitor``, ``comp``, ``fname``, ...).
    """

    def __init__(self, best: float | None = None, **kwargs: Any):
        super().__init__(reset_on_fit=best is None, **kwargs)
        self.best = best

    def _save(self, name: str) -> None:
        self.last_saved_path = save_checkpoint(self.learn, name, self.with_opt)


class ResumableEarlyStopping(EarlyStoppingCallback):
    """fastai's ``EarlyStoppingCallback`` that a resumed stage can continue: it starts from the
    interrupted run's best value and count of epochs without improvement.

    Args:
        best: Best monitored value so far (``None``: a fresh stage).
        wait: Epochs since that best value.
        **kwargs: Of ``EarlyStoppingCallback`` (``monitor``, ``comp``, ``patience``).
    """

    def __init__(self, best: float | None = None, wait: int = 0, **kwargs: Any):
        super().__init__(reset_on_fit=best is None, **kwargs)
        self.best, self.resume_wait = best, wait

    def before_fit(self) -> None:
        super().before_fit()
        self.wait = self.resume_wait


def save_checkpoint(learn: Learner, name: str, with_opt: bool = False) -> Path:
    """Atomically save the Learner's model as ``<path>/models/<name>.pth`` (fastai's format),
    with the optimiser state when ``with_opt``. Only the main process writes."""
    dest = Path(learn.path) / learn.model_dir / f"{name}.pth"
    if rank_distrib():
        return dest
    with atomic_path(dest) as tmp:
        save_model(tmp, learn.model, getattr(learn, "opt", None), with_opt)
    return dest


class StageCheckpoint:
    """The resume state of one training stage: ``models/<stage>.resume.pth`` (model, optimiser
    and every random-number generator that feeds training, :func:`rng_state`; loaded with
    ``weights_only=True``) and ``models/<stage>.resume.json`` (epochs done, the tracked best
    value and early-stopping count, whether the stage finished, and after which epochs an
    interrupted run resumed it: ``resumed_after``).

    With the generators restored, a stage killed after epoch k and resumed trains epochs k+1...
    exactly as the uninterrupted run would have (bit for bit on a CPU): the same shuffles,
    augmentations and dropout masks.

    Written after every epoch and at the end of the stage, the weights first and the JSON
    second, each atomically: the JSON never claims an epoch whose weights are not on disk.

    Args:
        learn: The Learner.
        stage: The stage's name.
    """

    def __init__(self, learn: Learner, stage: str):
        folder = Path(learn.path) / learn.model_dir
        self.learn, self.stage = learn, stage
        self.weights = folder / f"{stage}.resume.pth"
        self.state_file = folder / f"{stage}.resume.json"
        self.resumed_after: list[int] = []  # epochs after which interrupted runs resumed
        self.smooth_loss: dict[str, Any] | None = None  # read by load()

    def read(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is none (or its weights are missing)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or not self.weights.is_file():
            return None
        return state

    def write(self, epochs_done: int, epochs: int, finished: bool, **tracked: Any) -> None:
        """Save model and optimiser, then the state (main process only)."""
        if rank_distrib():
            return
        with atomic_path(self.weights) as tmp:
            torch.save(plain_state(self.learn), tmp)
        state = {
            "stage": self.stage,
            "epochs": epochs,
            "epochs_done": epochs_done,
            "finished": finished,
            "resumed_after": self.resumed_after,
            **{k: v for k, v in tracked.items() if v is not None},
        }
        write_json(self.state_file, state)

    def load(self) -> None:
        """Load the saved model, optimiser and random-number generators into the Learner (the
        generators as they were when the state was saved, for the next epoch to draw on)."""
        if self.learn.opt is None:
            self.learn.create_opt()
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        self.learn.model.load_state_dict(state["model"])
        if "opt" in state:
            self.learn.opt.load_state_dict(state["opt"])
        if "rng" in state:
            set_rng_state(self.learn, state["rng"])
        self.smooth_loss = state.get("smooth_loss")


class ResumeSmoothLoss(Callback):
    """Gives fastai's smoothed training loss (the history's ``train_loss``: an exponential
    average over every batch of the stage, which fastai starts afresh with each fit) the value
    and count an interrupted run had reached, so a resumed stage reports what the whole stage
    would have.

    Args:
        saved: ``{"val": tensor, "count": int}`` from the stage's checkpoint.
    """

    order = 51  # after the Recorder's before_fit, which resets it

    def __init__(self, saved: Mapping[str, Any]):
        self.saved = saved

    def before_fit(self) -> None:
        smooth = self.learn.recorder.smooth_loss
        smooth.val, smooth.count = self.saved["val"].clone(), int(self.saved["count"])


def rng_state(learn: Learner) -> dict[str, Any]:
    """Every random-number generator that feeds training, as plain data: Python's ``random``
    (fastai's item transforms), NumPy's, PyTorch's CPU and CUDA generators (batch
    augmentation, dropout, DataLoader workers' seeds) and each of the Learner's DataLoaders' own
    shuffling generator."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": [rng.getstate() if rng else None for rng in map(_shuffler, learn.dls.loaders)],
    }


def _shuffler(dl: Any) -> random.Random | None:
    """A DataLoader's shuffling generator: fastai's own (``dl.rng``), or that of the loader a
    ``DistributedDL`` wraps (each process shuffles alike and takes its share)."""
    inner = vars(dl).get("dl")
    found = vars(inner if inner is not None else dl).get("rng")
    return found if isinstance(found, random.Random) else None


def set_rng_state(learn: Learner, state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (read back by ``torch.load``: tuples as lists)."""

    def as_tuple(value: Any) -> Any:
        return tuple(as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value

    random.setstate(as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for dl, saved in zip(learn.dls.loaders, state["loaders"], strict=False):
        rng = _shuffler(dl)
        if rng is not None and saved is not None:
            rng.setstate(as_tuple(saved))


def plain_state(learn: Learner) -> dict[str, Any]:
    """The Learner's model and optimiser state as tensors, lists, dicts and numbers only, so
    that ``torch.load(weights_only=True)`` reads it without allow-listing any class (fastai's
    own optimiser state holds fastcore ``L`` lists and NumPy scalars)."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)) or type(obj).__name__ == "L":
            return [plain(v) for v in obj]
        if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
            return obj.item()  # NumPy scalar
        return obj

    state: dict[str, Any] = {"model": learn.model.state_dict()}
    if learn.opt is not None:
        state["opt"] = plain(learn.opt.state_dict())
    state["rng"] = rng_state(learn)
    recorder = getattr(learn, "recorder", None)
    if recorder is not None:
        smooth = recorder.smooth_loss
        state["smooth_loss"] = {"val": smooth.val.detach().cpu(), "count": int(smooth.count)}
    return state


class ResumeCheckpoint(Callback):
    """Saves the stage's :class:`StageCheckpoint` after every epoch and when the stage ends.

    Args:
        checkpoint: Where to save.
        epochs: The stage's epochs in all.
        start: Epochs an interrupted run already finished (this fit trains the rest).
        trackers: The stage's best-epoch and early-stopping callbacks (their state is saved).
    """

    order = 70  # after the history row and the best-epoch checkpoint of the epoch

    def __init__(
        self, checkpoint: StageCheckpoint, epochs: int, start: int = 0, trackers: tuple = ()
    ):
        self.checkpoint, self.epochs, self.start = checkpoint, epochs, start
        self.trackers = trackers

    def _tracked(self) -> dict[str, Any]:
        tracked: dict[str, Any] = {}
        for cb in self.trackers:
            if isinstance(cb, EarlyStoppingCallback):
                tracked["wait"] = int(cb.wait)
            best = getattr(cb, "best", None)
            if best is not None and math.isfinite(float(best)):
                tracked["best"] = float(best)
        return tracked

    def after_epoch(self) -> None:
        if self.epoch + 1 < self.n_epoch:  # the last epoch is saved once, by after_fit
            self.checkpoint.write(
                self.start + self.epoch + 1, self.epochs, False, **self._tracked()
            )

    def after_fit(self) -> None:
        self.checkpoint.write(self.epochs, self.epochs, True, **self._tracked())


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite (the message names the stage,
    epoch and iteration, and the last good checkpoint)."""


class StopOnNonFinite(Callback):
    """Stop training with :class:`NonFiniteLossError` as soon as a training loss is NaN or
    infinite, before the optimiser steps, so no checkpoint is written from a broken model.

    (fastai's ``TerminateOnNaNCallback`` cancels the fit silently and then runs the end-of-fit
    callbacks, which would save the broken weights; this stops with an error instead.)

    Args:
        stage: The stage's name (for the message).
        start: Epochs of the stage finished before this fit (a resumed stage).
        checkpoint: The stage's resume checkpoint (named in the message).
    """

    order = -5  # before the optimiser's step and every other callback of the batch

    def __init__(self, stage: str, start: int = 0, checkpoint: StageCheckpoint | None = None):
        self.stage, self.start, self.checkpoint = stage, start, checkpoint

    def after_loss(self) -> None:
        if not self.training:
            return
        loss = self.learn.loss.detach().float()
        if bool(torch.isfinite(loss).all()):
            return
        epoch = self.start + self.epoch
        kept = "no checkpoint of this stage was written yet"
        if self.checkpoint is not None:
            state = self.checkpoint.read()
            if state is not None:
                kept = (
                    f"the last good checkpoint is {self.checkpoint.weights} "
                    f"(after epoch {state['epochs_done'] - 1})"
                )
        raise NonFiniteLossError(
            f"the training loss became {loss.item()} in stage {self.stage!r}, epoch {epoch} "
            f"(iteration {self.iter} of the epoch); training stopped and {kept}. Lower the "
            "learning rate (or check the data and the loss), then rerun: the run resumes from "
            "that checkpoint"
        )


class HistoryCSV(Callback):
    """Rewrites ``<out>/history.csv`` atomically after every epoch (all stages, all fits).

    Args:
        path: The CSV file.
        stage: Label of the current stage (set by :func:`fit_stage`).
    """

    order = 60  # after the Recorder has the epoch's values

    def __init__(self, path: Path, stage: str = "fit"):
        self.path, self.stage, self.epoch_offset = Path(path), stage, 0
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # a resumed run continues the interrupted run's history
            self.rows = pd.read_csv(self.path).to_dict("records")

    def forget(self, stage: str, from_epoch: int) -> None:
        """Drop ``stage``'s rows from epoch ``from_epoch`` on (epochs a resumed run retrains)."""
        self.rows = [
            r for r in self.rows if not (r["stage"] == stage and int(r["epoch"]) >= from_epoch)
        ]

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
        epoch = self.epoch_offset + self.epoch
        row = {"stage": self.stage, "epoch": epoch, **dict(zip(names, values, strict=False))}
        row["lr"] = float(self.opt.hypers[-1]["lr"])
        self.rows.append(row)
        if rank_distrib():
            return
        frame = pd.DataFrame(self.rows)
        write_with(self.path, lambda p: frame.to_csv(p, index=False))
