"""SLSDeep's NLL + end-point-error loss, Sarker et al. 2018, Eqs. (1)-(3) (paper 003)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lessons_lib.losses.base import (
    SegmentationLoss,
    activate,
    class_labels,
    foreground,
    logits_4d,
    mask_3d,
    reduce_images,
)

__all__ = ["NLLEPELoss", "epe", "forward_differences", "nll_epe"]


def forward_differences(m: Tensor) -> tuple[Tensor, Tensor]:
    """The first derivatives of :func:`epe`: forward differences along x (columns) and y (rows).

    ``dx[..., i, j] = m[..., i, j + 1] - m[..., i, j]``, ``dy[..., i, j] = m[..., i + 1, j] -
    m[..., i, j]``, and 0 on the last column (``dx``) and last row (``dy``), so both keep the
    shape of ``m``. Used for Eq. (2) of Sarker et al., SLSDeep, MICCAI 2018 (arXiv 1805.10241).

    Args:
        m: Maps, (N, H, W).

    Returns:
        ``(dx, dy)``, each (N, H, W).
    """
    dx = F.pad(m[:, :, 1:] - m[:, :, :-1], (0, 1))
    dy = F.pad(m[:, 1:, :] - m[:, :-1, :], (0, 0, 0, 1))
    return dx, dy


def epe(pred_prob: Tensor, target: Tensor, eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """End-point error between the spatial derivatives of a predicted and a true mask.

    Eq. (2) of M. M. K. Sarker et al., "SLSDeep: Skin Lesion Segmentation Based on Dilated
    Residual and Pyramid Pooling Networks", MICCAI 2018 (arXiv 1805.10241), Sec. 2.2, after the
    optical-flow end-point error of Baker et al. (IJCV 2011)::

        L_epe = sqrt((M_x - G_x)^2 + (M_y - G_y)^2)

    averaged over pixels, with (M_x, M_y), (G_x, G_y) the "first derivatives" of the predicted
    mask M and ground truth G in x and y. The paper names no derivative kernel, so we use the
    plainest first derivative, the forward difference ``M[i, j+1] - M[i, j]`` (0 on the last
    column/row): it is non-zero only at edges, the boundaries the loss is meant to preserve,
    whereas a Sobel kernel would add a smoothing the paper does not mention. We compute
    ``sqrt(d^2 + eps) - sqrt(eps)``: the same value up to sqrt(eps), exactly 0 for a perfect
    prediction, and with a finite gradient where d = 0 (plain sqrt has none there).

    Args:
        pred_prob: Predicted lesion probability.
        target: True lesion mask, 0/1.
        eps: Keeps the square root differentiable at 0; > 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        pred_prob: (N, H, W), (N, 1, H, W) or (N, 2, H, W) probabilities.
        target: (N, H, W) or (N, 1, H, W).

    Returns:
        A scalar >= 0, or (N,) per-image values.
    """
    if eps <= 0:
        raise ValueError(f"epe: eps must be > 0, got {eps}")
    m = foreground(activate(pred_prob, "none"))
    g = mask_3d(target, m.shape, "epe").to(m.dtype)
    mx, my = forward_differences(m)
    gx, gy = forward_differences(g)
    sq = (mx - gx) ** 2 + (my - gy) ** 2
    per_pixel = torch.sqrt(sq + eps) - eps**0.5
    return reduce_images(per_pixel.mean(dim=(1, 2)), reduction)


def nll_epe(
    log_probs_or_logits: Tensor,
    target: Tensor,
    alpha: float = 0.5,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """SLSDeep's loss: negative log-likelihood plus ``alpha`` times the end-point error.

    M. M. K. Sarker et al., "SLSDeep: Skin Lesion Segmentation Based on Dilated Residual and
    Pyramid Pooling Networks", MICCAI 2018 (arXiv 1805.10241), Sec. 2.2, Eq. (3):
    ``L_total = L_nll + alpha * L_epe`` with ``alpha = 0.5``, where Eq. (1) is the binary NLL
    ``-(v log p + (1 - v) log(1 - p))`` with p the softmax lesion probability (channel 1 of the
    two-class output) and L_epe is :func:`epe` on p.

    ``log_softmax`` is applied to the input: on logits it gives log-probabilities, and on
    log-probabilities (e.g. a network ending in ``LogSoftmax``) it changes nothing, so both work.

    Args:
        log_probs_or_logits: Two-class scores: logits or log-probabilities.
        target: Lesion mask, 0/1 (class indices).
        alpha: Weight of the EPE term, >= 0 (the paper uses 0.5 and asks alpha < 1).
        eps: See :func:`epe`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the images of the batch.

    Shape:
        log_probs_or_logits: (N, 2, H, W). target: (N, H, W) or (N, 1, H, W).

    Returns:
        A scalar, or (N,) per-image losses.
    """
    x = logits_4d(log_probs_or_logits, "nll_epe")
    if x.shape[1] != 2:
        raise ValueError(f"nll_epe: needs 2-class logits (N, 2, H, W), got C = {x.shape[1]}")
    if alpha < 0:
        raise ValueError(f"nll_epe: alpha must be >= 0, got {alpha}")
    n, _, h, w = x.shape
    target = class_labels(target, torch.Size((n, h, w)), "nll_epe")
    log_p = F.log_softmax(x, dim=1)
    nll = F.nll_loss(log_p, target, reduction="none").mean(dim=(1, 2))
    content = epe(log_p[:, 1].exp(), target, eps=eps, reduction="none")
    return reduce_images(nll + alpha * content, reduction)


class NLLEPELoss(SegmentationLoss):
    """Module form of :func:`nll_epe` (Sarker et al. 2018, SLSDeep, Eq. (3)).

    The output is two class scores, logits or log-probabilities
    (``output_activation = "softmax"``).

    Args:
        alpha: Weight of the EPE term (paper: 0.5; 0 is the SLSDeep-EPE ablation).
        eps: See :func:`epe`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        input: (N, 2, H, W). target: (N, H, W) or (N, 1, H, W).
        ``activation``: (N, 2, H, W) softmax. ``decodes``: (N, H, W) argmax.
    """

    activations = ("softmax",)

    def __init__(self, alpha: float = 0.5, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__("softmax", reduction=reduction)
        if alpha < 0:
            raise ValueError(f"NLLEPELoss: alpha must be >= 0, got {alpha}")
        self.alpha, self.eps = alpha, eps

    def forward(self, log_probs_or_logits: Tensor, target: Tensor) -> Tensor:
        return nll_epe(log_probs_or_logits, target, self.alpha, self.eps, self.reduction)
