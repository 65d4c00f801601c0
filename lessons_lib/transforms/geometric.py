"""Random flips, shifts, rotations and scaling as one fastai affine batch transform.

Yuan & Lo 2017 (CDNN-29, arXiv:1709.09780), Section III-B: "a series of geometric
transformations, including randomly flipping, shifting, rotating as well as scaling".
:func:`geometric_augment` composes them into a single affine warp (one interpolation per image).
fastai's ``aug_transforms`` flips only horizontally (its vertical option adds 90-degree turns,
which do not suit 3:4 images) and shifts only together with zooming, so :class:`FlipVert` and
:class:`Shift` add a vertical flip and a translation, composed into fastai's ``Flip``.
"""

from __future__ import annotations

from functools import partial

from fastai.vision.augment import (
    AffineCoordTfm,
    PadMode,
    _draw_mask,
    affine_mat,
    aug_transforms,
    setup_aug_tfms,
)
from torch import Tensor

__all__ = ["FlipVert", "Shift", "geometric_augment", "shift_mat", "vflip_mat"]


def vflip_mat(x: Tensor, p: float = 0.5, draw=None, batch: bool = False) -> Tensor:
    """Random vertical-flip affine matrices (fastai's ``flip_mat`` flips horizontally).

    Args:
        x: The batch (only its size, dtype and device are used).
        p: Probability that an image is flipped.
        draw: fastai-style custom draw (1 flips, 0 does not), for tests.
        batch: One draw for the whole batch.

    Shape:
        (N, ...) -> (N, 3, 3).
    """
    sign = x.new_ones(x.size(0)) - 2 * _draw_mask(
        x, lambda x: x.new_ones(x.size(0)), draw=draw, p=p, batch=batch
    )
    one, zero = x.new_ones(x.size(0)), x.new_zeros(x.size(0))
    return affine_mat(one, zero, zero, zero, sign, zero)


def shift_mat(
    x: Tensor,
    max_shift: float = 0.1,
    p: float = 0.5,
    draw_x=None,
    draw_y=None,
    batch: bool = False,
) -> Tensor:
    """Random translation matrices, uniform in ``[-max_shift, max_shift]`` of the width/height.

    Args:
        x: The batch (only its size, dtype and device are used).
        max_shift: Largest shift, as a fraction of the image width (x) and height (y).
        p: Probability that an image is shifted.
        draw_x: fastai-style custom horizontal shift (fraction of the width), for tests.
        draw_y: Same, vertical (fraction of the height).
        batch: One draw for the whole batch.

    Shape:
        (N, ...) -> (N, 3, 3).
    """

    def _draw(x: Tensor) -> Tensor:
        return x.new_empty(x.size(0)).uniform_(-max_shift, max_shift)

    # fastai's sampling grid spans [-1, 1]: a shift of a fraction f of the side is 2 f.
    tx = 2 * _draw_mask(x, _draw, draw=draw_x, p=p, batch=batch)
    ty = 2 * _draw_mask(x, _draw, draw=draw_y, p=p, batch=batch)
    one, zero = x.new_ones(x.size(0)), x.new_zeros(x.size(0))
    # The matrix maps output coordinates to input ones: sampling at -t moves the content by +t.
    return affine_mat(one, zero, -tx, zero, one, -ty)


class FlipVert(AffineCoordTfm):
    """Random vertical flip (training only), a fastai affine batch transform.

    Args:
        p: Probability per image.
        draw: Custom draw, for tests.
        pad_mode: fastai padding mode.
    """

    def __init__(self, p: float = 0.5, draw=None, pad_mode=PadMode.Reflection) -> None:
        super().__init__(partial(vflip_mat, p=p, draw=draw), pad_mode=pad_mode, align_corners=True)


class Shift(AffineCoordTfm):
    """Random translation (training only), a fastai affine batch transform.

    Args:
        max_shift: Largest shift as a fraction of the width and height.
        p: Probability per image.
        draw_x: Custom horizontal shift, for tests.
        draw_y: Custom vertical shift, for tests.
        pad_mode: fastai padding mode (reflection, as fastai's own affine transforms).
    """

    def __init__(
        self,
        max_shift: float = 0.1,
        p: float = 0.5,
        draw_x=None,
        draw_y=None,
        pad_mode=PadMode.Reflection,
    ) -> None:
        super().__init__(
            partial(shift_mat, max_shift=max_shift, p=p, draw_x=draw_x, draw_y=draw_y),
            pad_mode=pad_mode,
            align_corners=True,
        )


def geometric_augment(
    max_rotate: float = 15.0,
    min_zoom: float = 0.9,
    max_zoom: float = 1.1,
    max_shift: float = 0.1,
    p_affine: float = 0.75,
) -> list:
    """The paper's geometric augmentation: flips, shift, rotation and scaling, one interpolation.

    Horizontal and vertical flips (each p = 0.5), then with probability ``p_affine`` each: a
    rotation in ``[-max_rotate, max_rotate]`` degrees, a scaling in ``[min_zoom, max_zoom]``
    (fastai's ``Zoom``, which also moves the centre) and a shift of up to ``max_shift`` of the
    side. No warp and no lighting change (the paper's photometric augmentation is the channel
    contrast of :class:`lessons_lib.transforms.RandomChannelContrast`). Reflection padding.

    Returns:
        fastai batch transforms (one composed affine transform) for ``segmentation_dls(aug=...)``.
    """
    base = aug_transforms(
        do_flip=True,
        flip_vert=False,
        max_rotate=max_rotate,
        min_zoom=min_zoom,
        max_zoom=max_zoom,
        max_lighting=0.0,
        max_warp=0.0,
        p_affine=p_affine,
    )
    extra = [FlipVert(p=0.5)]
    if max_shift > 0:
        extra.append(Shift(max_shift, p=p_affine))
    return setup_aug_tfms(list(base) + extra)
