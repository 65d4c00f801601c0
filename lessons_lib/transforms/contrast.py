"""Per-channel contrast augmentation: each channel stretched to a random percentile window.

Yuan & Lo 2017 (CDNN-29), Section III-B's second augmentation, "randomly normalizing the
contrast of each channel"; Fig. 1 shows the normalisation of each channel to its [5, 95]
percentile window. :class:`RandomChannelContrast` is the fastai batch transform (order 60: after
the colour channels of :mod:`lessons_lib.transforms.colour`, before ``Normalize``).
"""

from __future__ import annotations

import torch
from fastai.torch_core import TensorImage, retain_type
from fastai.vision.augment import RandTransform
from torch import Tensor

__all__ = ["RandomChannelContrast", "percentile_stretch", "random_channel_contrast"]


def percentile_stretch(x: Tensor, low: Tensor | float, high: Tensor | float) -> Tensor:
    """Map each channel's [low, high] percentile window linearly onto [0, 1], clipping outside.

    Percentiles use linear interpolation (``numpy.percentile``'s default). A channel whose
    window is empty (constant channel) is returned unchanged.

    Args:
        x: Images, float.
        low: Lower percentile(s) in [0, 100]: a number or a tensor broadcastable to (..., C).
        high: Upper percentile(s) in [0, 100], above ``low``; same broadcasting.

    Shape:
        (..., C, H, W) -> (..., C, H, W).

    Returns:
        The stretched images, in [0, 1] (except unchanged constant channels).
    """
    flat = x.flatten(-2)
    ordered = flat.sort(dim=-1).values
    n = ordered.shape[-1]
    lead = flat.shape[:-1]

    def value_at(pct: Tensor | float) -> Tensor:
        q = torch.as_tensor(pct, dtype=x.dtype, device=x.device).expand(lead)
        pos = (q / 100.0).clamp(0.0, 1.0) * (n - 1)
        i0 = pos.floor().long().clamp(0, n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        frac = pos - i0.to(x.dtype)
        v0 = ordered.gather(-1, i0.unsqueeze(-1)).squeeze(-1)
        v1 = ordered.gather(-1, i1.unsqueeze(-1)).squeeze(-1)
        return (v0 + frac * (v1 - v0))[..., None, None]

    lo, hi = value_at(low), value_at(high)
    width = hi - lo
    ok = width > 1e-6
    stretched = ((x - lo) / torch.where(ok, width, torch.ones_like(width))).clamp(0.0, 1.0)
    return torch.where(ok, stretched, x)


def random_channel_contrast(
    x: Tensor,
    low: tuple[float, float] = (0.0, 5.0),
    high: tuple[float, float] = (95.0, 100.0),
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random per-channel contrast normalisation (Yuan & Lo 2017, Section III-B and Fig. 1).

    For every image and channel, independently: draw a lower percentile uniformly in ``low``
    and an upper percentile uniformly in ``high``, then :func:`percentile_stretch`. Each image is
    transformed with probability ``p`` (all of its channels), else left unchanged.

    Args:
        x: Images, float, in [0, 1].
        low: Range of the lower percentile (default 0-5).
        high: Range of the upper percentile (default 95-100).
        p: Probability that an image is transformed.
        generator: Optional torch random generator (on ``x``'s device).

    Shape:
        (N, C, H, W) -> (N, C, H, W).

    Returns:
        The augmented batch.
    """
    if not (0.0 <= low[0] <= low[1] < high[0] <= high[1] <= 100.0):
        raise ValueError(f"need 0 <= low <= high <= 100 with low < high, got {low}, {high}")
    n, c = x.shape[:2]

    def draw(bounds: tuple[float, float]) -> Tensor:
        u = torch.rand((n, c), generator=generator, device=x.device, dtype=x.dtype)
        return bounds[0] + (bounds[1] - bounds[0]) * u

    out = percentile_stretch(x, draw(low), draw(high))
    if p >= 1.0:
        return out
    apply = torch.rand((n, 1, 1, 1), generator=generator, device=x.device) < p
    return torch.where(apply, out, x)


class RandomChannelContrast(RandTransform):
    """fastai batch ``RandTransform`` wrapping :func:`random_channel_contrast`.

    Training set only (``split_idx = 0``): at validation/test time it is the identity, as the
    paper describes the contrast normalisation as an augmentation of "the training images"
    (Section III-B) and states that no other pre-processing is done (Section II). ``order = 60``:
    after :class:`CDNNChannels` (50), so that the paper's per-channel normalisation acts on all
    seven channels, and before ``Normalize`` (99). Only ``TensorImage`` is changed, not masks.

    Reading of the paper: it gives no window ranges; Fig. 1 illustrates [5, 95]. We draw the
    lower percentile in [0, 5] and the upper in [95, 100] (between a plain min-max stretch and
    Fig. 1's window) per image and channel, and transform an image with probability ``p``
    (0.5 by default, so the network also sees unstretched images like the test images).

    Args:
        low: Range of the lower percentile.
        high: Range of the upper percentile.
        p: Probability, per image, of applying the transform.

    Shape:
        ``TensorImage`` (N, C, H, W) -> (N, C, H, W), values in [0, 1] where applied.
    """

    split_idx, order = 0, 60

    def __init__(
        self,
        low: tuple[float, float] = (0.0, 5.0),
        high: tuple[float, float] = (95.0, 100.0),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.low, self.high = tuple(low), tuple(high)

    def before_call(self, b: object, split_idx: int) -> None:
        """Always run; the per-image draw with probability ``p`` happens in ``encodes``."""
        self.do = True

    def encodes(self, x: TensorImage) -> TensorImage:
        """Stretch each channel of each (selected) image to a random percentile window."""
        plain = x.as_subclass(Tensor)
        return retain_type(random_channel_contrast(plain, self.low, self.high, self.p), x)
