"""Optimisers and learning-rate schedules with every hyper-parameter written out.

A recipe names its optimiser as an :class:`AdamSpec` or :class:`SGDSpec` and its policy as a
:class:`Schedule`: no value is taken from a library default without being written here, so a
chapter's page can list each one beside the paper's. :func:`read_optimizer` reads back what the
optimiser really held after training, which every run records in ``metrics.json``.

fastai's own defaults, for comparison (``fastai.optimizer.Adam``): beta1 0.9, beta2 0.99,
eps 1e-5, weight decay 0.01 decoupled (AdamW), none on batch-norm and bias parameters; PyTorch's
``torch.optim.Adam`` (and Lasagne's, TensorFlow's up to eps): beta1 0.9, beta2 0.999, eps 1e-8, no
weight decay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from fastai import optimizer as fastai_optimizer

__all__ = [
    "FASTAI_ONE_CYCLE",
    "SCHEDULES",
    "AdamSpec",
    "SGDSpec",
    "Schedule",
    "read_optimizer",
]

SCHEDULES = ("one_cycle", "constant", "poly")
"""Learning-rate policies of :class:`Schedule`."""


@dataclass(frozen=True)
class AdamSpec:
    """Adam (Kingma & Ba, 2015), every hyper-parameter explicit.

    Args:
        beta1: Decay of the running mean of gradients (fastai's ``mom``; a one-cycle
            :class:`Schedule` moves it between its ``moms``).
        beta2: Decay of the running mean of squared gradients (fastai's ``sqr_mom``).
        eps: Added to the denominator.
        weight_decay: Weight decay per step (0: none).
        decoupled: ``True``: decoupled weight decay (AdamW, Loshchilov & Hutter); ``False``:
            an L2 penalty added to the gradient.
        decay_bn_and_bias: Apply weight decay to batch-norm and bias parameters too (fastai
            exempts them by default).
    """

    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled: bool
    decay_bn_and_bias: bool

    name = "Adam"
    state_values = 2  # fp32 values kept per trainable parameter (both moment averages)

    def opt_func(self) -> Callable:
        """The fastai optimiser with these values (``opt_func`` of a ``Learner``)."""
        return partial(
            fastai_optimizer.Adam,
            mom=self.beta1,
            sqr_mom=self.beta2,
            eps=self.eps,
            wd=self.weight_decay,
            decouple_wd=self.decoupled,
        )

    def as_dict(self) -> dict[str, Any]:
        """The declaration, for ``metrics.json``."""
        return {"class": self.name, **asdict(self)}


@dataclass(frozen=True)
class SGDSpec:
    """Stochastic gradient descent with (PyTorch-style, undampened) momentum.

    Args:
        momentum: Momentum (0: plain SGD).
        weight_decay: Weight decay per step (0: none).
        decoupled: ``True``: decoupled weight decay; ``False``: an L2 penalty added to the
            gradient (Caffe's and MatConvNet's convention).
        decay_bn_and_bias: Apply weight decay to batch-norm and bias parameters too.
    """

    momentum: float
    weight_decay: float
    decoupled: bool
    decay_bn_and_bias: bool

    name = "SGD"

    @property
    def state_values(self) -> int:
        """fp32 values kept per trainable parameter (the velocity, with momentum)."""
        return 1 if self.momentum else 0

    def opt_func(self) -> Callable:
        """The fastai optimiser with these values (``opt_func`` of a ``Learner``)."""
        return partial(
            fastai_optimizer.SGD,
            mom=self.momentum,
            wd=self.weight_decay,
            decouple_wd=self.decoupled,
        )

    def as_dict(self) -> dict[str, Any]:
        """The declaration, for ``metrics.json``."""
        return {"class": self.name, **asdict(self)}


@dataclass(frozen=True)
class Schedule:
    """How the learning rate (and momentum) move over a training stage.

    Args:
        policy: One of :data:`SCHEDULES`: ``constant``; ``poly``, ``lr * (1 - t) ** power``
            at progress ``t`` (DeepLab, PSPNet); ``one_cycle`` (Smith, 2018, as fastai's
            ``fit_one_cycle``): cosine warm-up from ``lr / div`` over the first ``pct_start``
            of the stage, then cosine annealing to ``lr / div_final``, while Adam's beta1 (or
            SGD's momentum) goes ``moms[0] -> moms[1] -> moms[2]``.
        power: Exponent of ``poly``.
        pct_start, div, div_final, moms: The one-cycle policy's shape.
    """

    policy: str
    power: float | None = None
    pct_start: float | None = None
    div: float | None = None
    div_final: float | None = None
    moms: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.policy not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.policy!r}; valid: {', '.join(SCHEDULES)}")
        needs = {"poly": ("power",), "one_cycle": ("pct_start", "div", "div_final", "moms")}
        missing = [k for k in needs.get(self.policy, ()) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"schedule {self.policy!r} needs {', '.join(missing)} written out")

    def as_dict(self) -> dict[str, Any]:
        """The values that apply to this policy, for ``metrics.json``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


FASTAI_ONE_CYCLE = Schedule(
    "one_cycle", pct_start=0.25, div=25.0, div_final=1e5, moms=(0.95, 0.85, 0.95)
)
"""fastai's ``fit_one_cycle`` defaults, written out."""


def read_optimizer(opt: Any) -> dict[str, Any]:
    """What a fastai optimiser holds now (after training): its class and step functions, and
    each parameter group's hyper-parameters, under their usual names.

    Args:
        opt: ``learn.opt``.

    Returns:
        ``{"class", "steps", "decoupled_weight_decay", "groups": [{"lr", "beta1" or
        "momentum", "beta2", "eps", "weight_decay", "n_parameters"}, ...]}``.
    """
    steps = [getattr(cb, "__name__", type(cb).__name__) for cb in opt.cbs]
    adam = "adam_step" in steps
    groups = []
    for hypers, params in zip(opt.hypers, opt.param_lists, strict=True):
        group: dict[str, Any] = {}
        for key, value in hypers.items():
            if key == "mom":
                group["beta1" if adam else "momentum"] = float(value)
            elif key == "sqr_mom":
                group["beta2"] = float(value)
            elif key == "wd":
                group["weight_decay"] = float(value)
            elif isinstance(value, (int, float)):
                group[key] = float(value)
        group["n_parameters"] = int(sum(p.numel() for p in params))
        groups.append(group)
    return {
        "class": f"fastai.optimizer.Optimizer ({'Adam' if adam else 'SGD'})",
        "steps": steps,
        "decoupled_weight_decay": "weight_decay" in steps,
        "groups": groups,
    }
