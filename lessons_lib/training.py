"""The one training path of the course: fastai DataLoaders and Learner for every chapter.

Introduced by the fastai ResNet34 U-Net chapter (paper 002). A paper's recipe is expressed
as parameters (sizes, batch sizes, learning rates, epochs) and callbacks, never as a new
training loop: :func:`segmentation_dls` builds the data pipeline, :func:`make_learner` the
Learner (best-checkpoint saving, an epoch-by-epoch history CSV, mixed precision on a GPU),
and :func:`fit_stage` one stage of training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import fastai.callback.fp16  # noqa: F401  (patches Learner.to_fp16)
import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle, lr_find)
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import SaveModelCallback
from fastai.data.block import DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, Normalize
from fastai.learner import Learner, Metric, save_model
from fastai.optimizer import Adam
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage, PILMask, imagenet_stats
from fastai.vision.data import ImageBlock, MaskBlock
from torch import nn

from lessons_lib.atomic import atomic_path, write_with
from lessons_lib.data.io import read_mask

Pair = tuple[Path, Path]
CODES = ["skin", "lesion"]


def load_mask01(path: Path | str) -> PILMask:
    """A mask file as a fastai ``PILMask`` with values 0 (skin) and 1 (lesion)."""
    return PILMask.create(read_mask(path).astype(np.uint8))


def segmentation_dls(
    train: Sequence[Pair],
    valid: Sequence[Pair],
    size: int | tuple[int, int],
    bs: int,
    aug: Sequence | None = None,
    extra_tfms: Sequence = (),
    normalize: tuple | None = imagenet_stats,
    num_workers: int | None = None,
    seed: int | None = None,
) -> DataLoaders:
    """fastai DataLoaders for (image, mask) file pairs, images squished to ``size``.

    Args:
        train: Training pairs (usually from :meth:`PreparedData.pairs`).
        valid: Validation pairs.
        size: Square side, or ``(height, width)``, of the network input.
        bs: Batch size.
        aug: Batch augmentations for the training set (e.g. fastai ``aug_transforms``).
        extra_tfms: Further batch transforms (e.g. colour-space channels), before normalising.
        normalize: ``(mean, std)`` per channel, ``None`` for none.
        num_workers: Loader processes; default 0 on a CPU, up to 8 with a GPU.
        seed: Seed of the shuffling.

    Returns:
        ``DataLoaders`` whose batches are ``(TensorImage (N,3,H,W), TensorMask (N,H,W))``.
    """
    if not train or not valid:
        from lessons_lib.errors import DataError

        raise DataError(f"empty split: {len(train)} training and {len(valid)} validation pairs")
    items = [image for image, _ in list(train) + list(valid)]
    batch_tfms = list(aug or []) + list(extra_tfms)
    if normalize is not None:
        batch_tfms.append(Normalize.from_stats(*normalize))
    block = DataBlock(
        blocks=(ImageBlock(PILImage), MaskBlock(CODES)),
        get_y=_MaskOf({image: mask for image, mask in list(train) + list(valid)}),
        splitter=IndexSplitter(list(range(len(train), len(items)))),
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=batch_tfms,
    )
    if num_workers is None:
        num_workers = min(8, torch.get_num_threads()) if torch.cuda.is_available() else 0
    return block.dataloaders(items, bs=bs, num_workers=num_workers, seed=seed)


class _MaskOf:
    """Picklable ``get_y``: an image's mask, read as a 0/1 ``PILMask``.

    (Items are image paths, not ``(image, mask)`` tuples: fastai transforms map over
    tuples element by element.)
    """

    def __init__(self, masks: dict[Path, Path]):
        self.masks = masks

    def __call__(self, image: Path) -> PILMask:
        return load_mask01(self.masks[image])


class PooledScore(Metric):
    """Dice or Jaccard over the whole validation set (pooled), for the per-epoch table.

    Works for 1-channel (sigmoid) and 2-channel (softmax) outputs alike, through the loss's
    ``activation``. Pooled scores are what fastai reports; the challenges average per image
    (:mod:`lessons_lib.metrics` has both, and the chapters evaluate with the latter).

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
        from lessons_lib.evaluate import foreground

        activation = getattr(learn.loss_func, "activation", torch.sigmoid)
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


def make_learner(
    dls: DataLoaders,
    model: nn.Module,
    loss_func: Callable,
    out_dir: Path | str,
    opt_func: Callable = Adam,
    metrics: Sequence | None = None,
    splitter: Callable | None = None,
    wd: float | None = None,
    mixed_precision: bool | None = None,
) -> Learner:
    """A fastai Learner writing checkpoints and history under ``out_dir``.

    Args:
        dls: From :func:`segmentation_dls`.
        model: From :func:`lessons_lib.models.build_model`.
        loss_func: A :mod:`lessons_lib.losses` loss (its ``activation``/``decodes`` are used
            by prediction).
        out_dir: Run folder: ``models/`` (checkpoints) and ``history.csv`` go there.
        opt_func: fastai optimiser (Adam as in most of the papers).
        metrics: fastai metrics shown per epoch (:class:`PooledScore` Dice and Jaccard by
            default).
        splitter: Parameter groups (for freezing and discriminative learning rates);
            default the model's own ``splitter`` attribute if it has one.
        wd: Weight decay (fastai's default if ``None``).
        mixed_precision: fp16 training; default on when a GPU is used.
    """
    out_dir = Path(out_dir)
    splitter = splitter or getattr(model, "splitter", None)
    kwargs = {"splitter": splitter} if splitter is not None else {}
    learn = Learner(
        dls,
        model,
        loss_func=loss_func,
        opt_func=opt_func,
        metrics=list(metrics)
        if metrics is not None
        else [PooledScore("dice"), PooledScore("jaccard")],
        path=out_dir,
        model_dir="models",
        wd=wd,
        cbs=[HistoryCSV(out_dir / "history.csv")],
        **kwargs,
    )
    if mixed_precision is None:
        mixed_precision = torch.cuda.is_available()
    if mixed_precision:
        learn.to_fp16()
    return learn


def fit_stage(
    learn: Learner,
    stage: str,
    epochs: int,
    lr: float | slice | Sequence[float],
    freeze: bool | None = None,
    schedule: str = "one_cycle",
    monitor: str | None = "valid_loss",
) -> pd.DataFrame:
    """Train one stage and keep its best (or last) epoch, saved as ``models/<stage>.pth``.

    Args:
        learn: From :func:`make_learner`.
        stage: Name of the stage (checkpoint file and history label).
        epochs: Epochs; 0 skips the stage.
        lr: Learning rate, or one per parameter group (discriminative rates).
        freeze: ``True`` trains only the last parameter group (the decoder), ``False``
            unfreezes all, ``None`` leaves it as it is.
        schedule: ``one_cycle`` (fastai's default policy) or ``constant``.
        monitor: What decides the best epoch (``valid_loss`` or a metric name); ``None``
            keeps the last epoch, for papers that train a fixed number of epochs and choose
            nothing on validation data.

    Returns:
        This stage's rows of the history.
    """
    if epochs <= 0:
        return pd.DataFrame()
    if freeze is True:
        learn.freeze()
    elif freeze is False:
        learn.unfreeze()
    history = next(cb for cb in learn.cbs if isinstance(cb, HistoryCSV))
    history.stage = stage
    cbs = []
    if monitor is not None:
        comp = np.less if "loss" in monitor else np.greater
        cbs = [AtomicSaveModel(monitor=monitor, comp=comp, fname=stage)]
    lr_max = np.array(lr, dtype=float) if isinstance(lr, (list, tuple)) else lr
    if schedule == "one_cycle":
        learn.fit_one_cycle(epochs, lr_max, cbs=cbs)
    elif schedule == "constant":
        learn.fit(epochs, lr_max, cbs=cbs)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: one_cycle, constant")
    if monitor is None:
        save_checkpoint(learn, stage)
    return pd.DataFrame([r for r in history.rows if r["stage"] == stage])
