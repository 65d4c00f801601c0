"""Soft Jaccard distance of Yuan & Lo 2017, Eq. (1) (paper 001)."""

from __future__ import annotations

from torch import Tensor

from lessons_lib.losses.base import (
    SegmentationLoss,
    activate,
    check_reduction,
    foreground,
    mask_3d,
    reduce_images,
)

__all__ = ["JaccardDistance", "jaccard_distance"]


def jaccard_distance(
    probs_or_logits: Tensor,
    target: Tensor,
    activation: str = "sigmoid",
    eps: float = 1.0,
    per_image: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Soft Jaccard distance of Yuan & Lo.

    Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image Segmentation with Enhanced
    Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health Inform., 2019 (arXiv
    1709.09780, 2017), Sec. III-A, Eq. (1), taken from their earlier paper (Y. Yuan, M. Chao,
    Y.-C. Lo, IEEE Trans. Med. Imaging, 2017)::

        L_d = 1 - sum_ij(t_ij p_ij) / (sum_ij t_ij^2 + sum_ij p_ij^2 - sum_ij t_ij p_ij)

    with t_ij, p_ij the target and predicted lesion probability of pixel (i, j). The sums run
    over the pixels of one image, so by default (``per_image=True``) the distance is computed per
    image and averaged over the batch, matching the challenge's mean per-image Jaccard;
    ``per_image=False`` sums over the whole batch as if it were one image. ``eps`` is added to
    numerator and denominator (not in the paper): it keeps L_d defined, and 0, when both masks
    are empty, and is negligible next to the sums of a real image.

    Args:
        probs_or_logits: The network's output: lesion logits (``"sigmoid"``), class scores
            (``"softmax"``: channel 1 is the lesion) or probabilities (``"none"``).
        target: Lesion mask, 0/1 or soft in [0, 1].
        activation: The output's activation (:data:`lessons_lib.losses.base.ACTIVATIONS`).
        eps: Smoothing term, >= 0.
        per_image: Distance per image (True) or over the whole batch (False).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``"none"`` needs ``per_image``).

    Shape:
        probs_or_logits: (N, H, W), (N, 1, H, W) or (N, 2, H, W). target: (N, H, W) or
        (N, 1, H, W).

    Returns:
        A scalar in [0, 1], or (N,) per-image distances.
    """
    _check_jaccard_args(eps, per_image, reduction)
    p = foreground(activate(probs_or_logits, activation))
    t = mask_3d(target, p.shape, "jaccard_distance").to(p.dtype)
    dims = (1, 2) if per_image else (0, 1, 2)
    inter = (t * p).sum(dims)
    union = (t * t).sum(dims) + (p * p).sum(dims) - inter
    dist = 1 - (inter + eps) / (union + eps)
    return reduce_images(dist, reduction) if per_image else dist


def _check_jaccard_args(eps: float, per_image: bool, reduction: str) -> None:
    check_reduction(reduction)
    if eps < 0:
        raise ValueError(f"jaccard_distance: eps must be >= 0, got {eps}")
    if not per_image and reduction == "none":
        raise ValueError("jaccard_distance: reduction='none' needs per_image=True")


class JaccardDistance(SegmentationLoss):
    """Module form of :func:`jaccard_distance` (Yuan & Lo 2017, Eq. (1)).

    Args:
        output_activation: How the network output becomes a probability: ``"sigmoid"`` (one
            logit per pixel, CDNN-29's output), ``"softmax"`` (class scores) or ``"none"``.
        eps: Smoothing term added to numerator and denominator.
        per_image: Distance per image, then averaged (True), or over the whole batch.
        thresh: Probability above which ``decodes`` calls a pixel lesion (1-channel output).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        input: (N, H, W) or (N, 1, H, W) (sigmoid), (N, C, H, W) (softmax). target: (N, H, W)
        or (N, 1, H, W).
    """

    def __init__(
        self,
        output_activation: str = "sigmoid",
        eps: float = 1.0,
        per_image: bool = True,
        thresh: float = 0.5,
        reduction: str = "mean",
    ) -> None:
        super().__init__(output_activation, thresh, reduction)
        _check_jaccard_args(eps, per_image, reduction)
        self.eps, self.per_image = eps, per_image

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return jaccard_distance(
            output, target, self.output_activation, self.eps, self.per_image, self.reduction
        )
