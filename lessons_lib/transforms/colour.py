"""Colour-space input channels (RGB + HSV + CIELAB lightness), as a fastai batch transform.

Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image Segmentation with Enhanced
Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health Inform., 2017 (arXiv:1709.09780).

* :func:`rgb_to_cdnn7` / :class:`CDNNChannels`: Section II stacks RGB, the three HSV channels and
  the lightness L of CIELAB into a 7-channel input ("192 x 256 x 7"), because HSV and L
  "separate luma from chroma" so that per-channel augmentation stays realistic. Pure torch, so
  it runs on the GPU inside the batch pipeline.

Normalisation: the paper states "No other pre-processing was performed" (Section II), i.e. it
mentions no mean/std standardisation; all seven channels are already in [0, 1]. A fastai
``Normalize`` (order 99) may follow these transforms; ``Normalize()`` without statistics then
estimates 7-channel statistics from one batch. That standardisation is our choice, not the
paper's.

Pipeline order (fastai runs batch transforms by ascending ``order``): ``IntToFloatTensor`` (10)
-> geometric augmentation (``Flip``/affine, 30) -> lighting (40) -> :class:`CDNNChannels` (50)
-> :class:`RandomChannelContrast` (60) -> ``Normalize`` (99). The colour conversion comes after
the geometric warps so that the circular hue channel is never interpolated.
"""

from __future__ import annotations

import torch
from fastai.torch_core import TensorImage, retain_type
from fasttransform import Transform
from torch import Tensor

__all__ = [
    "CHANNEL_NAMES",
    "CDNNChannels",
    "rgb_to_cdnn7",
    "rgb_to_hsv",
    "rgb_to_lab_lightness",
]

CHANNEL_NAMES = ("R", "G", "B", "H", "S", "V", "L")
"""Names of the seven channels of :func:`rgb_to_cdnn7`, in order."""

# sRGB (D65) -> XYZ, second row only (Y), as in skimage.color.colorconv.xyz_from_rgb.
_Y_FROM_RGB = (0.212671, 0.715160, 0.072169)


def _check_rgb(x: Tensor) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected RGB images (..., 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1], got {x.dtype}")


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB in [0, 1] to HSV in [0, 1], matching ``skimage.color.rgb2hsv``.

    Args:
        x: RGB images, float, values in [0, 1].

    Shape:
        (..., 3, H, W) -> (..., 3, H, W) (hue, saturation, value).

    Returns:
        HSV; hue is 0 for grey pixels, saturation is 0 for black ones (skimage's conventions).
    """
    _check_rgb(x)
    r, g, b = x.unbind(-3)
    v = x.amax(-3)
    delta = v - x.amin(-3)
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    s = torch.where(grey, torch.zeros_like(v), delta / torch.where(v > 0, v, torch.ones_like(v)))
    # skimage assigns red, then green, then blue: the last channel equal to the max wins.
    h = torch.where(
        b == v,
        4.0 + (r - g) / safe,
        torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe),
    )
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(grey, torch.zeros_like(h), h)
    return torch.stack([h, s, v], dim=-3)


def rgb_to_lab_lightness(x: Tensor) -> Tensor:
    """Lightness L of CIELAB (D65, 2 degree observer) divided by 100, i.e. in [0, 1].

    Matches ``skimage.color.rgb2lab(x)[..., 0] / 100``: sRGB gamma expansion, Y of XYZ, then
    ``L = 116 f(Y) - 16`` with ``f(t) = t^(1/3)`` above 0.008856 and ``7.787 t + 16/116`` below.

    Args:
        x: RGB images, float, values in [0, 1].

    Shape:
        (..., 3, H, W) -> (..., 1, H, W).

    Returns:
        L / 100.
    """
    _check_rgb(x)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    w = torch.tensor(_Y_FROM_RGB, dtype=x.dtype, device=x.device).view(3, 1, 1)
    y = (lin * w).sum(-3, keepdim=True)
    f = torch.where(y > 0.008856, y.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    return (116.0 * f - 16.0) / 100.0


def rgb_to_cdnn7(x: Tensor) -> Tensor:
    """The 7 input channels of Yuan & Lo 2017, Section II: R, G, B, H, S, V, L (CIELAB L / 100).

    Args:
        x: RGB images, float, values in [0, 1] (before any mean/std normalisation).

    Shape:
        (..., 3, H, W) -> (..., 7, H, W).

    Returns:
        The channels in the order R, G, B, H, S, V, L, all in [0, 1].
    """
    return torch.cat([x, rgb_to_hsv(x), rgb_to_lab_lightness(x)], dim=-3)


class CDNNChannels(Transform):
    """fastai batch transform adding the HSV and L channels (Yuan & Lo 2017, Section II).

    It must see [0, 1] RGB, so ``order = 50``: after ``IntToFloatTensor`` (10), geometric (30)
    and lighting (40) augmentation, before ``Normalize`` (99). It raises if the input is clearly
    outside [0, 1] (e.g. already normalised). ``decodes`` keeps the RGB channels so that
    ``show_batch`` / ``show_results`` still work. Masks (``TensorMask``) are left alone.

    Args:
        channels: ``"rgbhsvl"`` (the paper's 7 channels) or ``"rgb"`` (the RGB-only ablation of
            Tables IV/V; then the transform is the identity).

    Shape:
        ``TensorImage`` (N, 3, H, W) -> (N, 7, H, W) (``"rgbhsvl"``) or (N, 3, H, W) (``"rgb"``).
    """

    order = 50

    def __init__(self, channels: str = "rgbhsvl") -> None:
        if channels not in ("rgbhsvl", "rgb"):
            raise ValueError(f"channels must be 'rgbhsvl' or 'rgb', got {channels!r}")
        super().__init__()
        self.channels = channels

    @property
    def n_channels(self) -> int:
        """Channels the model receives: 7 or 3 (use as ``in_channels``)."""
        return 7 if self.channels == "rgbhsvl" else 3

    def encodes(self, x: TensorImage) -> TensorImage:
        """Stack RGB + HSV + L (or return ``x`` unchanged in ``"rgb"`` mode)."""
        if self.channels == "rgb":
            return x
        plain = x.as_subclass(Tensor)
        if plain.amin() < -0.01 or plain.amax() > 1.01:
            raise ValueError("CDNNChannels needs RGB in [0, 1]: it must run before Normalize")
        return retain_type(rgb_to_cdnn7(plain.clamp(0.0, 1.0)), x)

    def decodes(self, x: TensorImage) -> TensorImage:
        """Keep the RGB channels for display."""
        return x[..., :3, :, :] if x.shape[-3] == 7 else x
