"""Optimisers declared in full: the fastai optimiser they build holds exactly those values, and
what a run records is read back from the optimiser itself."""

from __future__ import annotations

import pytest
import torch
from fastai.learner import Learner
from fastai.optimizer import Optimizer
from helpers import ADAM
from torch import nn

from lessons_lib.training.optim import (
    FASTAI_ONE_CYCLE,
    AdamSpec,
    Schedule,
    SGDSpec,
    read_optimizer,
)

LASAGNE = AdamSpec(
    beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, decay_bn_and_bias=False
)


def _opt(spec, lr: float = 1e-3) -> Optimizer:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    return spec.opt_func()([list(net[:2].parameters()), list(net[2:].parameters())], lr=lr)


def test_adam_builds_the_declared_values_not_fastais_defaults() -> None:
    read = read_optimizer(_opt(LASAGNE))
    assert read["class"].endswith("(Adam)") and not read["decoupled_weight_decay"]
    for group in read["groups"]:
        assert group["beta1"] == 0.9 and group["beta2"] == 0.999
        assert group["eps"] == 1e-8 and group["weight_decay"] == 0.0
    assert [g["n_parameters"] for g in read["groups"]] == [3 * 4 * 9 + 4 + 8, 4 + 1]


def test_decoupled_weight_decay_and_sgd_are_read_back() -> None:
    assert read_optimizer(_opt(ADAM))["decoupled_weight_decay"] is True
    sgd = SGDSpec(momentum=0.9, weight_decay=1e-4, decoupled=False, decay_bn_and_bias=True)
    read = read_optimizer(_opt(sgd))
    assert read["class"].endswith("(SGD)") and not read["decoupled_weight_decay"]
    assert read["groups"][0]["momentum"] == 0.9 and read["groups"][0]["weight_decay"] == 1e-4
    assert (sgd.state_values, LASAGNE.state_values) == (1, 2)
    assert SGDSpec(0.0, 0.0, False, False).state_values == 0


def test_the_learner_applies_the_declared_weight_decay_and_bn_rule(tmp_path) -> None:
    """make_learner passes weight decay and the batch-norm/bias rule to the Learner, whose
    ``wd`` would otherwise replace the optimiser's at every fit."""
    from fastai.data.core import DataLoaders

    from lessons_lib.training import make_learner

    sgd = SGDSpec(momentum=0.9, weight_decay=1e-4, decoupled=False, decay_bn_and_bias=True)
    net = nn.Sequential(nn.Conv2d(3, 2, 1))
    data = [(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.long))] * 2
    dls = DataLoaders.from_dsets(data, data, bs=2)
    learn = make_learner(dls, net, nn.CrossEntropyLoss(), tmp_path, sgd)
    assert isinstance(learn, Learner) and learn.wd == 1e-4 and learn.wd_bn_bias is True
    with pytest.raises(TypeError, match="AdamSpec or SGDSpec"):
        make_learner(dls, net, nn.CrossEntropyLoss(), tmp_path, "adam")


def test_a_schedule_must_write_its_shape_out() -> None:
    with pytest.raises(ValueError, match="needs power written out"):
        Schedule("poly")
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        Schedule("cosine")
    assert FASTAI_ONE_CYCLE.as_dict() == {
        "policy": "one_cycle",
        "pct_start": 0.25,
        "div": 25.0,
        "div_final": 1e5,
        "moms": (0.95, 0.85, 0.95),
    }
