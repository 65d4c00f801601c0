"""Resumable stages and the stop on a non-finite loss (lessons_lib.training.learner/callbacks).

A "kill" is simulated by a callback that raises after an epoch: before the epoch's resume
checkpoint (order 65: the history row is written, the checkpoint not) or after it (order 80).
The papermill test that kills a real chapter run is in tests/notebooks/test_resume_chapter.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback
from fastai.vision.augment import aug_transforms
from helpers import ADAM
from torch import nn

from lessons_lib import chapter
from lessons_lib.data import split_pairs
from lessons_lib.losses import BCEWithLogits2d
from lessons_lib.training import NonFiniteLossError, fit_stage, make_learner, segmentation_dls


class Killed(Exception):
    """Stands for SIGKILL in the middle of a stage."""


class KillAfter(Callback):
    def __init__(self, epoch: int, order: int):
        self.at, self.order = epoch, order

    def after_epoch(self) -> None:
        if self.epoch == self.at:
            raise Killed("killed")


@pytest.fixture(scope="module")
def pairs(synthetic_data):
    _, data = synthetic_data
    return split_pairs(data.pairs("train"), 2, seed=0)


def small_net() -> nn.Module:
    """Dropout draws on PyTorch's generator: a resumed stage must draw the same masks."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(8, 1, 1)
    )


def learner(pairs, out, loss=None):
    """A fresh process's Learner: seeded, shuffled training batches, random flips and
    rotations (Python's and PyTorch's generators) and dropout."""
    chapter.setup(0)
    train, valid = pairs
    aug = aug_transforms(do_flip=True, flip_vert=True, max_rotate=20.0, max_zoom=1.0)
    dls = segmentation_dls(train, valid, 32, 4, aug=aug, seed=0)
    return make_learner(dls, small_net(), loss or BCEWithLogits2d(), out, ADAM)


def history(out) -> pd.DataFrame:
    return pd.read_csv(out / "history.csv")


@pytest.mark.filterwarnings("error:Could not load the optimizer state")
@pytest.mark.parametrize("order", [65, 80], ids=["before-checkpoint", "after-checkpoint"])
def test_a_killed_stage_resumes_after_its_last_checkpointed_epoch(pairs, tmp_path, order, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    unbroken = learner(pairs, whole)
    fit_stage(unbroken, "s", 4, 1e-3, monitor="pooled_jaccard")
    whole_model = unbroken.model.state_dict()

    learn = learner(pairs, cut)
    learn.add_cb(KillAfter(1, order))
    with pytest.raises(Killed):
        fit_stage(learn, "s", 4, 1e-3, monitor="pooled_jaccard")
    before = history(cut)
    state = json.loads((cut / "models" / "s.resume.json").read_text())
    assert state["epochs_done"] == (2 if order == 80 else 1) and not state["finished"]
    saved = torch.load(cut / "models" / "s.resume.pth", weights_only=True)
    assert set(saved) == {"model", "opt", "rng", "smooth_loss"}  # all the stage goes on from

    learn = learner(pairs, cut)  # a new process: fresh model, the same folder
    rows = fit_stage(learn, "s", 4, 1e-3, monitor="pooled_jaccard")
    assert f"resuming after epoch {state['epochs_done'] - 1} of 4" in capsys.readouterr().out
    after = history(cut)
    assert list(after["epoch"]) == [0, 1, 2, 3] and list(rows["epoch"]) == [0, 1, 2, 3]
    kept = state["epochs_done"]
    pd.testing.assert_frame_equal(after.iloc[:kept], before.iloc[:kept])  # nothing rewritten
    # the learning-rate schedule continued where it was: the same rates as the unbroken run
    np.testing.assert_allclose(after["lr"], history(whole)["lr"], rtol=1e-9)
    # and so did the shuffling, augmentation and dropout: every number of the unbroken run
    pd.testing.assert_frame_equal(after, history(whole), check_exact=True)
    for key, value in learn.model.state_dict().items():
        assert torch.equal(value, whole_model[key]), key
    state = json.loads((cut / "models" / "s.resume.json").read_text())
    assert state["finished"] and state["resumed_after"] == [kept]  # where it went on


def test_a_finished_stage_is_loaded_not_retrained(pairs, tmp_path, capsys):
    learn = learner(pairs, tmp_path)
    fit_stage(learn, "s", 2, 1e-3, monitor="pooled_jaccard")
    fit_stage(learn, "t", 1, 1e-4, monitor=None)
    trained = {k: v.clone() for k, v in learn.model.state_dict().items()}
    rows = history(tmp_path)

    again = learner(pairs, tmp_path)
    fit_stage(again, "s", 2, 1e-3, monitor="pooled_jaccard")
    fit_stage(again, "t", 1, 1e-4, monitor=None)
    out = capsys.readouterr().out
    assert "stage 's': finished by an earlier run" in out and "stage 't': finished" in out
    pd.testing.assert_frame_equal(history(tmp_path), rows)  # no epoch trained twice
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_a_changed_stage_length_trains_afresh(pairs, tmp_path):
    fit_stage(learner(pairs, tmp_path), "s", 1, 1e-3)
    rows = fit_stage(learner(pairs, tmp_path), "s", 2, 1e-3)
    assert list(rows["epoch"]) == [0, 1]


class NanFrom(nn.Module):
    """BCE with logits that returns NaN from the given epoch's first training batch."""

    def __init__(self, epoch: int):
        super().__init__()
        self.loss, self.epoch, self.calls = BCEWithLogits2d(), epoch, 0
        self.activation = self.loss.activation

    def forward(self, out, target):
        value = self.loss(out, target)
        return value * float("nan") if self.poisoned else value


def test_a_nan_loss_stops_with_stage_and_epoch_and_keeps_the_last_good_checkpoint(pairs, tmp_path):
    loss = NanFrom(1)
    learn = learner(pairs, tmp_path, loss)

    class Poison(Callback):
        def before_epoch(self):
            loss.poisoned = self.epoch >= loss.epoch

    learn.add_cb(Poison())
    with pytest.raises(NonFiniteLossError) as err:
        fit_stage(learn, "warm", 3, 1e-3, monitor="valid_loss")
    message = str(err.value)
    assert "stage 'warm', epoch 1" in message and "nan" in message
    assert "warm.resume.pth (after epoch 0)" in message
    state = json.loads((tmp_path / "models" / "warm.resume.json").read_text())
    assert state["epochs_done"] == 1 and not state["finished"]
    weights = torch.load(tmp_path / "models" / "warm.resume.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert list(history(tmp_path)["epoch"]) == [0]  # the broken epoch is not in the history
