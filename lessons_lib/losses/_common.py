"""Shape, target and reduction helpers shared by the losses of :mod:`lessons_lib.losses`.

They implement the conventions listed in the package docstring: inputs are logits (N, C, H, W)
(binary losses also (N, H, W)), targets are (N, H, W) or (N, 1, H, W) masks, a loss is computed
per image and reduced over the batch by ``reduction``. The binary ``activation``/``decodes``
helpers are what the fastai ``loss_func`` methods of the binary losses call.
"""

from __future__ import annotations

import torch
from torch import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _plain(x: Tensor) -> Tensor:
    """Drop tensor subclasses (fastai's ``TensorImage``/``TensorMask``); keeps autograd."""
    return x if type(x) is Tensor else x.as_subclass(Tensor)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(per_image: Tensor, reduction: str) -> Tensor:
    _check_reduction(reduction)
    if reduction == "mean":
        return per_image.mean()
    return per_image.sum() if reduction == "sum" else per_image


def _logits_4d(logits: Tensor, loss: str) -> Tensor:
    logits = _plain(logits)
    if logits.ndim != 4:
        raise ValueError(f"{loss}: logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    return logits


def _mask(target: Tensor, shape: torch.Size, loss: str) -> Tensor:
    """Bring ``target`` (N, H, W) or (N, 1, H, W) to (N, H, W), checking it against ``shape``."""
    target = _plain(target)
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != shape:
        raise ValueError(
            f"{loss}: target must be (N, H, W) or (N, 1, H, W) with (N, H, W) = {tuple(shape)}, "
            f"got shape {tuple(target.shape)}"
        )
    return target


def _labels(target: Tensor, shape: torch.Size, loss: str) -> Tensor:
    """Class-index mask (N, H, W) long; float targets must hold whole numbers."""
    target = _mask(target, shape, loss)
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError(f"{loss}: target holds non-integer class indices")
    return target.long()


def _foreground_prob(x: Tensor, from_logits: bool, loss: str) -> Tensor:
    """Lesion probability (N, H, W) from (N, H, W), (N, 1, H, W) or 2-class (N, 2, H, W) input."""
    x = _plain(x)
    if x.ndim == 4 and x.shape[1] in (1, 2):
        if x.shape[1] == 2:
            return x.softmax(dim=1)[:, 1] if from_logits else x[:, 1]
        x = x[:, 0]
    elif x.ndim != 3:
        raise ValueError(
            f"{loss}: input must be (N, H, W), (N, 1, H, W) or (N, 2, H, W), "
            f"got shape {tuple(x.shape)}"
        )
    return torch.sigmoid(x) if from_logits else x


def _decode_binary(probs: Tensor, thresh: float) -> Tensor:
    """(N, 2, H, W) probabilities -> argmax; (N, 1, H, W) or (N, H, W) -> ``probs > thresh``."""
    probs = _plain(probs)
    if probs.ndim == 4 and probs.shape[1] == 2:
        return probs.argmax(dim=1)
    if probs.ndim == 4:
        probs = probs[:, 0]
    return (probs > thresh).long()


def _activate_binary(logits: Tensor) -> Tensor:
    logits = _plain(logits)
    if logits.ndim == 4 and logits.shape[1] == 2:
        return logits.softmax(dim=1)
    return torch.sigmoid(logits)
