"""Pixel-wise cross-entropy losses (papers 000, 002 and 004).

* :func:`cross_entropy_2d` / :class:`CrossEntropy2d`: softmax cross-entropy of
  Ramachandram & DeVries 2017 (paper 000) and Qi et al. 2017 (paper 004).
* :func:`bce_with_logits` / :class:`BCEWithLogits2d`: sigmoid binary cross-entropy of
  Raghunath & Nofallah 2018 (paper 002).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lessons_lib.losses.base import (
    SegmentationLoss,
    class_labels,
    logits_4d,
    mask_3d,
    plain,
    reduce_images,
)

__all__ = ["BCEWithLogits2d", "CrossEntropy2d", "bce_with_logits", "cross_entropy_2d"]


# ----------------------------------------------------------------------------- cross-entropy
def cross_entropy_2d(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Per-pixel softmax cross-entropy averaged over pixels.

    The "per-pixel cross-entropy loss function" of D. Ramachandram and T. DeVries, "LesionSeg:
    Semantic segmentation of skin lesions using Deep Convolutional Neural Network", arXiv
    1703.03372, 2017 (Sec. 3.3), and the "softmax loss layer" of J. Qi, M. Le, C. Li and P. Zhou,
    "Global and local information based deep network for skin lesion segmentation", arXiv
    1703.05467, 2017 (Sec. 2.2): for pixel label y and logits z,
    ``L = -log(exp(z_y) / sum_c exp(z_c))``, averaged over the H*W pixels of each image.

    Args:
        logits: Raw scores, at least 2 classes (a 1-channel output needs :func:`bce_with_logits`).
        target: Class index of each pixel (long, or float holding whole numbers).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        logits: (N, C, H, W) with C >= 2. target: (N, H, W) or (N, 1, H, W).

    Returns:
        A scalar, or (N,) per-image losses if ``reduction="none"``. With ``"mean"`` it equals
        ``F.cross_entropy(logits, target)``.
    """
    logits = logits_4d(logits, "cross_entropy_2d")
    if logits.shape[1] < 2:
        raise ValueError(
            f"cross_entropy_2d: needs C >= 2 classes, got C = {logits.shape[1]}; "
            "use bce_with_logits for a 1-channel output"
        )
    n, _, h, w = logits.shape
    target = class_labels(target, torch.Size((n, h, w)), "cross_entropy_2d")
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    return reduce_images(per_pixel.mean(dim=(1, 2)), reduction)


class CrossEntropy2d(SegmentationLoss):
    """Module form of :func:`cross_entropy_2d` (Ramachandram & DeVries 2017; Qi et al. 2017).

    The output is class scores (``output_activation = "softmax"``).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        logits: (N, C, H, W), C >= 2. target: (N, H, W) or (N, 1, H, W).
        ``activation``: (N, C, H, W) softmax. ``decodes``: (N, H, W) argmax.
    """

    activations = ("softmax",)

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__("softmax", reduction=reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy_2d(logits, target, self.reduction)


# ----------------------------------------------------------------------------- BCE
def bce_with_logits(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on sigmoid(logits), averaged over pixels.

    The "BCEWithLogitsLoss which applied a sigmoid transform before calculating cross entropy
    loss" of A. Raghunath and S. Nofallah, "A Deep Fully Convolutional Network for Segmentation
    of Dermoscopic Images", ISIC 2018 challenge report, 2018 (Sec. 2.2): with
    ``p = sigmoid(z)``, ``L = -(t log p + (1 - t) log(1 - p))`` averaged over pixels.

    Args:
        logits: One raw score per pixel.
        target: Lesion mask, 0/1 (any dtype) or soft labels in [0, 1].
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        logits: (N, 1, H, W) or (N, H, W). target: (N, H, W) or (N, 1, H, W).

    Returns:
        A scalar, or (N,) per-image losses. With ``"mean"`` it equals
        ``F.binary_cross_entropy_with_logits`` on the flattened tensors.
    """
    logits = plain(logits)
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim != 3:
        raise ValueError(
            f"bce_with_logits: logits must be (N, 1, H, W) or (N, H, W), "
            f"got shape {tuple(logits.shape)}"
        )
    target = mask_3d(target, logits.shape, "bce_with_logits").to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return reduce_images(per_pixel.mean(dim=(1, 2)), reduction)


class BCEWithLogits2d(SegmentationLoss):
    """Module form of :func:`bce_with_logits` (Raghunath & Nofallah 2018).

    The output is one logit per pixel (``output_activation = "sigmoid"``).

    Args:
        thresh: Probability above which ``decodes`` calls a pixel lesion.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        logits: (N, 1, H, W) or (N, H, W). target: (N, H, W) or (N, 1, H, W).
        ``activation``: (N, 1, H, W) sigmoid. ``decodes``: (N, H, W) long.
    """

    activations = ("sigmoid",)

    def __init__(self, thresh: float = 0.5, reduction: str = "mean") -> None:
        super().__init__("sigmoid", thresh, reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return bce_with_logits(logits, target, self.reduction)
