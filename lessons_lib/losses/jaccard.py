"""Soft Jaccard distance of Yuan & Lo 2017, Eq. (1) (paper 001)."""

from __future__ import annotations

from torch import Tensor, nn

from lessons_lib.losses._common import (
    _activate_binary,
    _check_reduction,
    _decode_binary,
    _foreground_prob,
    _mask,
    _plain,
    _reduce,
)

__all__ = ["JaccardDistance", "jaccard_distance"]


def jaccard_distance(
    probs_or_logits: Tensor,
    target: Tensor,
    from_logits: bool = True,
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
        probs_or_logits: Lesion logits (``from_logits=True``) or probabilities; a 2-channel input
            uses channel 1 (after softmax if ``from_logits``).
        target: Lesion mask, 0/1 or soft in [0, 1].
        from_logits: Apply sigmoid (1 channel) or softmax (2 channels) first.
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
    p = _foreground_prob(probs_or_logits, from_logits, "jaccard_distance")
    t = _mask(target, p.shape, "jaccard_distance").to(p.dtype)
    dims = (1, 2) if per_image else (0, 1, 2)
    inter = (t * p).sum(dims)
    union = (t * t).sum(dims) + (p * p).sum(dims) - inter
    dist = 1 - (inter + eps) / (union + eps)
    return _reduce(dist, reduction) if per_image else dist


def _check_jaccard_args(eps: float, per_image: bool, reduction: str) -> None:
    _check_reduction(reduction)
    if eps < 0:
        raise ValueError(f"jaccard_distance: eps must be >= 0, got {eps}")
    if not per_image and reduction == "none":
        raise ValueError("jaccard_distance: reduction='none' needs per_image=True")


class JaccardDistance(nn.Module):
    """Module form of :func:`jaccard_distance` (Yuan & Lo 2017, Eq. (1)).

    Args:
        from_logits: Input is logits (True, what fastai models give) or probabilities.
        eps: Smoothing term added to numerator and denominator.
        per_image: Distance per image, then averaged (True), or over the whole batch.
        thresh: Probability above which ``decodes`` calls a pixel lesion (1-channel input).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        input: (N, H, W), (N, 1, H, W) or (N, 2, H, W). target: (N, H, W) or (N, 1, H, W).
        ``activation``: sigmoid (softmax for 2 channels). ``decodes``: (N, H, W) long.
    """

    def __init__(
        self,
        from_logits: bool = True,
        eps: float = 1.0,
        per_image: bool = True,
        thresh: float = 0.5,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_jaccard_args(eps, per_image, reduction)
        self.from_logits, self.eps, self.per_image = from_logits, eps, per_image
        self.thresh, self.reduction = thresh, reduction

    def forward(self, probs_or_logits: Tensor, target: Tensor) -> Tensor:
        return jaccard_distance(
            probs_or_logits, target, self.from_logits, self.eps, self.per_image, self.reduction
        )

    def activation(self, x: Tensor) -> Tensor:
        return _activate_binary(x) if self.from_logits else _plain(x)

    def decodes(self, probs: Tensor) -> Tensor:
        return _decode_binary(probs, self.thresh)
