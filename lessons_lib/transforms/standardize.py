"""Per-image standardisation of the input, as a fastai batch transform (LesionSeg).

D. Ramachandram and T. DeVries, "LesionSeg: Semantic segmentation of skin lesions using Deep
Convolutional Neural Network", arXiv:1703.03372, 2017, Section 3.2: "we also perform
per-image-standardization of the input image". The name is TensorFlow's
``tf.image.per_image_standardization``, which we reproduce: each image (all its channels
together) gets zero mean and unit variance,

    (x - mean) / max(std, 1 / sqrt(N)),    N = channels x height x width,

with the *population* standard deviation (divided by N, not N - 1). The floor ``1 / sqrt(N)``
keeps a constant image from being divided by zero: it becomes all zeros.

TensorFlow 1.x applied it to the image as stored (0-255 for ``uint8``); here it runs on fastai's
[0, 1] floats (after ``IntToFloatTensor``). The result is the same for every image whose
standard deviation exceeds the floor (the formula is scale-invariant), that is for every real
photograph; only nearly constant images differ.
"""

from __future__ import annotations

import math

import torch
from fastai.torch_core import TensorImage
from fasttransform import Transform
from torch import Tensor

__all__ = ["PerImageStandardize", "per_image_standardization"]


def per_image_standardization(x: Tensor) -> Tensor:
    """TensorFlow's ``per_image_standardization``: zero mean, unit variance per image.

    Ramachandram & DeVries 2017 (LesionSeg), Section 3.2. Mean and (population) standard
    deviation are taken over each image's channels and pixels together, and the standard
    deviation is floored at ``1 / sqrt(N)``, N = C x H x W, as TensorFlow does.

    Args:
        x: One image (C, H, W) or a batch (N, C, H, W), floating point.

    Shape:
        (C, H, W) -> (C, H, W); (N, C, H, W) -> (N, C, H, W).

    Returns:
        The standardised image(s), same dtype; a constant image gives zeros.

    Raises:
        ValueError: ``x`` is not 3-D or 4-D, or not floating point.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"expected a floating-point image, got {x.dtype}")
    dims = (-3, -2, -1)
    n = x.shape[-3] * x.shape[-2] * x.shape[-1]
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, correction=0)
    return (x - mean) / std.clamp(min=1.0 / math.sqrt(n))


class PerImageStandardize(Transform):
    """fastai batch transform applying :func:`per_image_standardization` to the images.

    Ramachandram & DeVries 2017 (LesionSeg), Section 3.2. Pass it through
    ``segmentation_dls(..., extra_tfms=[PerImageStandardize()], normalize=None)``: it replaces
    the per-channel ``Normalize``. ``order = 90``: after ``IntToFloatTensor`` (10) and the
    augmentations (30-40), before a ``Normalize`` (99) if one were added. It runs on the
    training and validation batches alike (and on prediction), and only on ``TensorImage``:
    masks (``TensorMask``) pass untouched.

    ``decodes`` (used by ``show_batch`` and ``show_results`` only) cannot undo the
    standardisation (the mean and spread are gone); it rescales each image to [0, 1] by its
    own minimum and maximum, so that batches can still be looked at.

    Shape:
        ``TensorImage`` (N, C, H, W) -> (N, C, H, W).
    """

    order = 90

    def encodes(self, x: TensorImage) -> TensorImage:
        """Standardise each image of the batch."""
        return per_image_standardization(x)

    def decodes(self, x: TensorImage) -> TensorImage:
        """Each image min-max rescaled to [0, 1], for display."""
        dims = (-3, -2, -1)
        low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        return (x - low) / (high - low).clamp(min=1e-8)
