"""The one training path of the course: a fastai Learner for every chapter, trained in stages.

A paper's recipe is expressed as parameters (sizes, batch sizes, learning rates, epochs) and
callbacks, never as a new training loop: :func:`make_learner` builds the Learner (best-checkpoint
saving, an epoch-by-epoch history CSV, mixed precision on a GPU) and :func:`fit_stage` trains one
stage.

Stages are resumable: after every epoch the model and optimiser state are checkpointed
(:class:`~lessons_lib.training.callbacks.StageCheckpoint`); a run killed mid-stage and started
again in the same folder continues from the stage's last finished epoch, with the learning-rate
schedule where it was, and a finished stage is loaded instead of trained again. A loss that
becomes NaN or infinite stops the run with a
:class:`~lessons_lib.training.callbacks.NonFiniteLossError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastai.callback.fp16  # noqa: F401  (patches Learner.to_fp16)
import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle, lr_find)
import numpy as np
import pandas as pd
import torch
from fastai.callback.schedule import ParamScheduler, combined_cos, valley
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib
from torch import nn

from lessons_lib.training.callbacks import (
    AtomicSaveModel,
    FreeGradients,
    HistoryCSV,
    PooledScore,
    ResumableEarlyStopping,
    ResumeCheckpoint,
    ResumeSmoothLoss,
    StageCheckpoint,
    StopOnNonFinite,
    save_checkpoint,
)
from lessons_lib.training.distributed import fit_distributed, in_distributed_context
from lessons_lib.training.optim import FASTAI_ONE_CYCLE, SCHEDULES, AdamSpec, Schedule, SGDSpec

__all__ = ["SCHEDULES", "fit_stage", "make_learner", "poly_schedule", "stage_schedules"]


def poly_schedule(lr: float | np.ndarray, power: float = 0.9) -> Callable[[float], np.ndarray]:
    """The "poly" policy, ``lr * (1 - t) ** power`` at training progress ``t`` in [0, 1]
    (Chen et al., DeepLab, 2016; Zhao et al., PSPNet, 2017; SLSDeep uses power 0.9).

    fastai's ``SchedPoly`` is another curve, ``lr * (1 - t ** power)``, hence this function.

    Args:
        lr: Base rate, or one per parameter group.
        power: Exponent.

    Returns:
        A schedule for fastai's ``ParamScheduler`` (called with ``t`` every iteration).
    """
    base = np.atleast_1d(np.asarray(lr, dtype=float))

    def schedule(pos: float) -> np.ndarray:
        return base * (1.0 - pos) ** power

    return schedule


def make_learner(
    dls: DataLoaders,
    model: nn.Module,
    loss_func: Callable,
    out_dir: Path | str,
    optimizer: AdamSpec | SGDSpec,
    metrics: Sequence | None = None,
    splitter: Callable | None = None,
    mixed_precision: bool | None = None,
    n_gpus: int | None = 1,
) -> Learner:
    """A fastai Learner writing checkpoints and history under ``out_dir``.

    Args:
        dls: From :func:`segmentation_dls`.
        model: From :func:`lessons_lib.models.build_model`.
        loss_func: A :mod:`lessons_lib.losses` loss (its ``activation``/``decodes`` are used
            by prediction).
        out_dir: Run folder: ``models/`` (checkpoints) and ``history.csv`` go there.
        optimizer: The recipe's optimiser, every hyper-parameter written out
            (:mod:`lessons_lib.training.optim`; no fastai default is taken).
        metrics: fastai metrics shown per epoch (:class:`PooledScore` Dice and Jaccard by
            default).
        splitter: Parameter groups (for freezing and discriminative learning rates);
            default the model's own ``splitter`` attribute if it has one.
        mixed_precision: fp16 training; default on when a GPU is used.
        n_gpus: GPUs of this machine that :func:`fit_stage` trains on (data-parallel, one
            process each, through :mod:`lessons_lib.training.distributed`; the batch size is
            per GPU). On a CPU, more than 1 means that many CPU processes (for testing).
    """
    if not isinstance(optimizer, (AdamSpec, SGDSpec)):
        raise TypeError(
            f"optimizer must be an AdamSpec or SGDSpec (lessons_lib.training.optim), not "
            f"{optimizer!r}: write every hyper-parameter out"
        )
    out_dir = Path(out_dir)
    splitter = splitter or getattr(model, "splitter", None)
    kwargs = {"splitter": splitter} if splitter is not None else {}
    learn = Learner(
        dls,
        model,
        loss_func=loss_func,
        opt_func=optimizer.opt_func(),
        metrics=list(metrics)
        if metrics is not None
        else [PooledScore("dice"), PooledScore("jaccard")],
        path=out_dir,
        model_dir="models",
        wd=optimizer.weight_decay,
        wd_bn_bias=optimizer.decay_bn_and_bias,
        cbs=[HistoryCSV(out_dir / "history.csv"), FreeGradients()],
        **kwargs,
    )
    if mixed_precision is None:
        mixed_precision = torch.cuda.is_available()
    if mixed_precision:
        learn.to_fp16()
    learn.n_gpus = 1 if n_gpus is None else n_gpus  # None means 1, as in resolve_n_gpus
    learn.optimizer_spec = optimizer
    return learn


def lr_find(learn: Learner, num_it: int) -> float | None:
    """fastai's learning-rate range test (``Learner.lr_find``: the rate grows exponentially from
    1e-7 to 10 over ``num_it`` iterations, stopped when the loss exceeds 4 times its best), its
    plot, and fastai's ``valley`` suggestion; the model and optimiser are restored afterwards.

    fastai suggests from the iterations left after dropping the first tenth, the last 5 and any
    after a non-finite loss. When the loss diverged so early that fewer than two are left,
    ``Learner.lr_find`` fails with an ``IndexError``; here the curve is plotted, the reason
    printed, and ``None`` returned.

    Args:
        learn: From :func:`make_learner`.
        num_it: Iterations of the range test.

    Returns:
        The suggested learning rate, or ``None``.
    """
    learn.lr_find(num_it=num_it, suggest_funcs=None, show_plot=False)
    lrs = torch.tensor(learn.recorder.lrs[num_it // 10 : -5], dtype=torch.float64)
    losses = torch.tensor([float(x) for x in learn.recorder.losses[num_it // 10 : -5]])
    finite = torch.isfinite(losses)
    if not finite.all():
        first_bad = int(torch.nonzero(~finite)[0])
        lrs, losses = lrs[:first_bad], losses[:first_bad]
    if len(losses) < 2:
        learn.recorder.plot_lr_find()
        print(
            f"the learning-rate finder stopped after {len(learn.recorder.losses)} of {num_it} "
            "iterations (the loss diverged or too few iterations): too few points for a "
            "suggestion"
        )
        return None
    lr, point = valley(lrs, losses, num_it)
    learn.recorder.plot_lr_find(suggestions=[point], nms=["valley"])
    return lr


def resumed_schedule(
    schedule: Callable[[float], Any], start: int, epochs: int
) -> Callable[[float], Any]:
    """``schedule`` over a whole stage of ``epochs``, for a fit that trains only its last
    ``epochs - start`` epochs (a resumed stage): progress ``t`` of the fit is progress
    ``(start + t * (epochs - start)) / epochs`` of the stage."""
    if start == 0:
        return schedule

    def shifted(pos: float) -> Any:
        return schedule((start + pos * (epochs - start)) / epochs)

    return shifted


def stage_schedules(
    learn: Learner, schedule: Schedule, lr_max: Any
) -> dict[str, Callable[[float], Any]]:
    """The hyper-parameter schedules of a stage, over its progress ``t`` in [0, 1].

    ``one_cycle``: cosine warm-up from ``lr_max / div`` over the first ``pct_start``, cosine
    annealing to ``lr_max / div_final``; momentum (Adam's beta1) ``moms[0] -> moms[1] ->
    moms[2]`` (fastai's ``fit_one_cycle``). ``poly``: :func:`poly_schedule`. ``constant``:
    nothing scheduled.
    """
    if schedule.policy == "one_cycle":
        if learn.opt is None:
            learn.create_opt()
        learn.opt.set_hyper("lr", lr_max)
        lr = np.array([h["lr"] for h in learn.opt.hypers])
        return {
            "lr": combined_cos(schedule.pct_start, lr / schedule.div, lr, lr / schedule.div_final),
            "mom": combined_cos(schedule.pct_start, *schedule.moms),
        }
    if schedule.policy == "poly":
        return {"lr": poly_schedule(lr_max, schedule.power)}
    return {}


def _as_schedule(schedule: Schedule | str, power: float | None) -> Schedule:
    """A policy name as a :class:`Schedule` (``one_cycle``: fastai's shape, written out in
    :data:`~lessons_lib.training.optim.FASTAI_ONE_CYCLE`)."""
    if isinstance(schedule, Schedule):
        return schedule
    if schedule == "one_cycle":
        return FASTAI_ONE_CYCLE
    if schedule == "poly":
        return Schedule("poly", power=0.9 if power is None else power)
    return Schedule(schedule)


def fit_stage(
    learn: Learner,
    stage: str,
    epochs: int,
    lr: float | slice | Sequence[float],
    freeze: bool | None = None,
    schedule: Schedule | str = "one_cycle",
    monitor: str | None = "valid_loss",
    patience: int | None = None,
    power: float | None = None,
    last_stage: bool = False,
) -> pd.DataFrame:
    """Train one stage and keep its best (or last) epoch, saved as ``models/<stage>.pth``.

    Resumable: the model, optimiser and tracker state are saved after every epoch
    (``models/<stage>.resume.pth`` and ``.resume.json``). When the run folder holds a stage
    of the same name that an interrupted run left unfinished, training continues after its
    last finished epoch (the schedule continues where it was, the history keeps the finished
    epochs once); a stage that finished is loaded (model and optimiser) and not trained again.

    Args:
        learn: From :func:`make_learner`.
        stage: Name of the stage (checkpoint file and history label).
        epochs: Epochs; 0 skips the stage.
        lr: Learning rate, or one per parameter group (discriminative rates).
        freeze: ``True`` trains only the last parameter group (the decoder), ``False``
            unfreezes all, ``None`` leaves it as it is.
        schedule: A :class:`~lessons_lib.training.optim.Schedule` (a recipe's), or one of
            :data:`SCHEDULES` by name: ``one_cycle`` (fastai's shape), ``constant``, or
            ``poly``: ``lr * (1 - t) ** power`` with ``t`` the fraction of the stage's
            iterations done, updated every iteration (the "poly" policy of DeepLab and PSPNet).
        monitor: What decides the best epoch (``valid_loss`` or a metric name); ``None``
            keeps the last epoch, for papers that train a fixed number of epochs and choose
            nothing on validation data.
        patience: Stop early when ``monitor`` has not improved for this many epochs (fastai's
            ``EarlyStoppingCallback``); the best epoch is still the one kept.
        power: Exponent of a ``poly`` schedule given by name (default 0.9).
        last_stage: The model is not trained after this stage: its optimiser state (momentum,
            Adam's moments; as large as the model each) is freed once the stage's checkpoints
            are written. The hyper-parameters stay (``metrics.json`` records them).

    Returns:
        This stage's rows of the history.

    Raises:
        NonFiniteLossError: the training loss became NaN or infinite (the message names the
            stage, epoch and the last good checkpoint, which is kept).
    """
    if epochs <= 0:
        return pd.DataFrame()
    schedule = _as_schedule(schedule, power)
    if patience is not None and monitor is None:
        raise ValueError("early stopping (patience) needs a monitor")
    n_gpus = getattr(learn, "n_gpus", 1)
    if (n_gpus != 1 or num_distrib() > 1) and not in_distributed_context(learn):
        # one process per GPU, each running this function; the main process writes
        train = functools.partial(
            fit_stage,
            stage=stage,
            epochs=epochs,
            lr=lr,
            freeze=freeze,
            schedule=schedule,
            monitor=monitor,
            patience=patience,
        )
        rows = fit_distributed(learn, n_gpus, train)
        history = learn.history_csv
        history.stage = stage
        history.forget(stage, 0)
        history.rows.extend(rows.to_dict("records"))
        if last_stage and learn.opt is not None:
            learn.opt.clear_state()
        return rows
    if freeze is True:
        learn.freeze()
    elif freeze is False:
        learn.unfreeze()
    history = learn.history_csv  # fastai exposes a callback under its snake-case name
    history.stage = stage
    checkpoint = StageCheckpoint(learn, stage)
    state = checkpoint.read()
    if state is not None and state.get("epochs") != epochs:
        state = None  # another stage of the same name (a changed recipe): train it afresh
    start = 0
    if state is not None:
        checkpoint.load()
        start = int(state["epochs_done"])
        if state.get("finished"):
            if not (Path(learn.path) / learn.model_dir / f"{stage}.pth").is_file():
                save_checkpoint(learn, stage)
            if not rank_distrib():
                print(f"stage {stage!r}: finished by an earlier run in this folder; loaded")
            if last_stage:
                learn.opt.clear_state()  # loaded with the model: freed as after training
            return _stage_rows(history, stage)
        checkpoint.resumed_after = [*state.get("resumed_after", []), start]
        if not rank_distrib():
            print(f"stage {stage!r}: resuming after epoch {start - 1} of {epochs} (earlier run)")
    history.forget(stage, start)
    history.epoch_offset = start
    best = state.get("best") if state is not None else None
    cbs: list = [StopOnNonFinite(stage, start, checkpoint)]
    if start and checkpoint.smooth_loss is not None:
        cbs.append(ResumeSmoothLoss(checkpoint.smooth_loss))
    trackers: list = []
    if monitor is not None:
        comp = np.less if "loss" in monitor else np.greater
        if patience is not None:  # before the checkpoint: both read the same epoch's value
            trackers.append(
                ResumableEarlyStopping(
                    best=best,
                    wait=int(state.get("wait", 0)) if state is not None else 0,
                    monitor=monitor,
                    comp=comp,
                    patience=patience,
                )
            )
        trackers.append(AtomicSaveModel(best=best, monitor=monitor, comp=comp, fname=stage))
    cbs += trackers
    cbs.append(ResumeCheckpoint(checkpoint, epochs, start, tuple(trackers)))
    lr_max = np.array(lr, dtype=float) if isinstance(lr, (list, tuple)) else lr
    scheds = {
        name: resumed_schedule(f, start, epochs)
        for name, f in stage_schedules(learn, schedule, lr_max).items()
    }
    if scheds:
        cbs.insert(0, ParamScheduler(scheds))
    try:
        learn.fit(epochs - start, lr_max, cbs=cbs)
    finally:
        history.epoch_offset = 0
    if monitor is None:
        save_checkpoint(learn, stage)
    if last_stage and learn.opt is not None:
        learn.opt.clear_state()
    return _stage_rows(history, stage)


def _stage_rows(history: HistoryCSV, stage: str) -> pd.DataFrame:
    return pd.DataFrame([r for r in history.rows if r["stage"] == stage])
