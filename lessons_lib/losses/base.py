"""The contract every loss of :mod:`lessons_lib.losses` keeps, and the helpers that keep it.

A network's output means nothing without knowing how it becomes a probability, so each loss
**declares its output's activation** (:attr:`SegmentationLoss.output_activation`):

* ``"sigmoid"``: one logit per pixel, (N, 1, H, W) or (N, H, W); the lesion probability is
  ``sigmoid(x)``;
* ``"softmax"``: one score per class, (N, C, H, W) with C >= 2, logits or log-probabilities
  (softmax gives the same probabilities for both); the lesion probability is channel 1;
* ``"none"``: the output already is a probability (1 channel) or a probability per class.

:func:`activate` applies it and refuses an output whose channel count does not fit (a 2-channel
output is never silently passed through a sigmoid); :func:`foreground` takes the lesion
probability (N, H, W) from activated outputs. fastai uses a loss's ``activation`` and ``decodes``
in ``get_preds``; the training metrics and :mod:`lessons_lib.evaluation` use the same two
functions, so every chapter turns outputs into probabilities one way.

Targets are masks (N, H, W) (what fastai's ``MaskBlock`` yields) or (N, 1, H, W), 1 = lesion.
A loss is computed per image and reduced over the batch by ``reduction``: ``"mean"``,
``"sum"`` or ``"none"`` (one value per image).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

ACTIVATIONS = ("sigmoid", "softmax", "none")

REDUCTIONS = ("mean", "sum", "none")


def plain(x: Tensor) -> Tensor:
    """Drop tensor subclasses (fastai's ``TensorImage``/``TensorMask``); keeps autograd."""
    return x if type(x) is Tensor else x.as_subclass(Tensor)


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_images(per_image: Tensor, reduction: str) -> Tensor:
    check_reduction(reduction)
    if reduction == "mean":
        return per_image.mean()
    return per_image.sum() if reduction == "sum" else per_image


def logits_4d(logits: Tensor, loss: str) -> Tensor:
    logits = plain(logits)
    if logits.ndim != 4:
        raise ValueError(f"{loss}: logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    return logits


def mask_3d(target: Tensor, shape: torch.Size, loss: str) -> Tensor:
    """Bring ``target`` (N, H, W) or (N, 1, H, W) to (N, H, W), checking it against ``shape``."""
    target = plain(target)
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != shape:
        raise ValueError(
            f"{loss}: target must be (N, H, W) or (N, 1, H, W) with (N, H, W) = {tuple(shape)}, "
            f"got shape {tuple(target.shape)}"
        )
    return target


def class_labels(target: Tensor, shape: torch.Size, loss: str) -> Tensor:
    """Class-index mask (N, H, W) long; float targets must hold whole numbers."""
    target = mask_3d(target, shape, loss)
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError(f"{loss}: target holds non-integer class indices")
    return target.long()


def check_activation(kind: str) -> None:
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown output activation {kind!r}; valid: {', '.join(ACTIVATIONS)}")


def activate(output: Tensor, kind: str) -> Tensor:
    """Probabilities (N, C, H, W) from a network output whose activation is ``kind``.

    Args:
        output: (N, C, H, W) network output; a sigmoid output may also be (N, H, W).
        kind: One of :data:`ACTIVATIONS`.

    Returns:
        (N, C, H, W) probabilities (C = 1 for a sigmoid output).

    Raises:
        ValueError: the channel count does not fit ``kind`` (sigmoid: 1; softmax: >= 2).
    """
    check_activation(kind)
    x = plain(output)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected a (N, C, H, W) output, got shape {tuple(output.shape)}")
    channels = x.shape[1]
    if kind == "sigmoid":
        if channels != 1:
            raise ValueError(
                f"a sigmoid output has 1 channel, got {channels}: use a softmax loss "
                "(e.g. CrossEntropy2d) for a multi-channel output"
            )
        return torch.sigmoid(x)
    if kind == "softmax":
        if channels < 2:
            raise ValueError(
                "a softmax output has at least 2 channels, got 1: use a sigmoid loss "
                "(e.g. BCEWithLogits2d) for a 1-channel output"
            )
        return x.softmax(dim=1)
    return x


def foreground(probs: Tensor) -> Tensor:
    """Lesion probability (N, H, W) from activated outputs: the last of (N, 1 or 2, H, W)
    channels (the sigmoid's only channel, or the softmax's lesion class), or (N, H, W) as is."""
    probs = plain(probs)
    if probs.ndim == 3:
        return probs
    if probs.ndim == 4 and probs.shape[1] in (1, 2):
        return probs[:, -1]
    raise ValueError(
        f"expected (N, H, W), (N, 1, H, W) or (N, 2, H, W) probabilities, got {tuple(probs.shape)}"
    )


class SegmentationLoss(nn.Module):
    """Base class of the losses: the declared output activation, fastai's ``activation`` and
    ``decodes``, and the ``reduction`` attribute fastai sets to ``"none"`` in ``get_preds``.

    Args:
        output_activation: How the network's output becomes probabilities (:data:`ACTIVATIONS`).
        thresh: Probability above which ``decodes`` calls a pixel lesion (1-channel outputs;
            several channels are decoded by argmax).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.
    """

    output_activation: str
    activations: ClassVar[tuple[str, ...]] = ACTIVATIONS

    def __init__(
        self, output_activation: str, thresh: float = 0.5, reduction: str = "mean"
    ) -> None:
        super().__init__()
        check_activation(output_activation)
        if output_activation not in self.activations:
            raise ValueError(
                f"{type(self).__name__} takes an output activation in {self.activations}, "
                f"got {output_activation!r}"
            )
        check_reduction(reduction)
        self.output_activation, self.thresh, self.reduction = output_activation, thresh, reduction

    def activation(self, output: Tensor) -> Tensor:
        """Probabilities (N, C, H, W) of a network output (what fastai's ``get_preds`` applies)."""
        return activate(output, self.output_activation)

    def decodes(self, probs: Tensor) -> Tensor:
        """A class-index mask (N, H, W) from activated outputs: argmax over several channels,
        ``prob > thresh`` for one."""
        probs = plain(probs)
        if probs.ndim == 4 and probs.shape[1] > 1:
            return probs.argmax(dim=1)
        return (foreground(probs) > self.thresh).long()
