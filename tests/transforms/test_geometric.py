"""lessons_lib.transforms.geometric: CDNN-29's geometric augmentation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from fastai.torch_core import TensorImage, TensorMask
from fastai.vision.augment import AffineCoordTfm

from lessons_lib.transforms.geometric import (
    FlipVert,
    Shift,
    geometric_augment,
    shift_mat,
    vflip_mat,
)


def _ramp(n: int = 2, h: int = 12, w: int = 16) -> TensorImage:
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) / (h * w)
    return TensorImage(x.expand(n, 3, h, w).clone())


def test_vflip_flips_rows_exactly_and_only_when_drawn() -> None:
    x = _ramp()
    tfm = FlipVert(p=1.0, draw=[1, 0])
    out = tfm(x, split_idx=0)
    assert torch.allclose(out[0], x[0].flip(-2), atol=1e-5)
    assert torch.allclose(out[1], x[1], atol=1e-5)
    mat = vflip_mat(x, p=1.0, draw=[1, 1])
    assert torch.equal(mat[:, 1, 1], torch.tensor([-1.0, -1.0]))


def test_shift_moves_content_by_the_drawn_fraction() -> None:
    h, w = 12, 16
    x = torch.zeros(1, 3, h, w)
    x[..., 6:8, 8:10] = 1.0  # away from the edges the shift reflects in
    x = TensorImage(x)
    # a quarter of the width to the right, a sixth of the height down (exact pixel shifts with
    # align_corners=True need a shift of k / (side - 1))
    dx, dy = 4 / (w - 1), 2 / (h - 1)
    out = Shift(max_shift=0.5, p=1.0, draw_x=[dx], draw_y=[dy])(x, split_idx=0)
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    assert (ys.min().item(), xs.min().item()) == (8, 12)
    assert out[0, 0].sum().item() == pytest.approx(4.0, abs=1e-4)


def test_shift_mat_range_and_probability() -> None:
    torch.manual_seed(0)
    x = torch.zeros(4000, 3, 2, 2)
    mat = shift_mat(x, max_shift=0.1, p=0.5)
    t = -mat[:, 0, 2] / 2  # back to a fraction of the width
    assert t.abs().max() <= 0.1 + 1e-6
    assert 0.4 < (t != 0).float().mean() < 0.6


def test_masks_follow_the_image_and_stay_binary() -> None:
    torch.manual_seed(1)
    image = torch.zeros(2, 3, 16, 16)
    image[..., 3:9, 5:12] = 1.0
    mask = TensorMask((image[:, 0] > 0.5).long())
    tfm = geometric_augment()[0]
    out_image, out_mask = tfm((TensorImage(image), mask), split_idx=0)  # one draw for both
    assert set(torch.unique(out_mask).tolist()) <= {0, 1}
    agree = ((out_image[:, 0] > 0.5).long() == out_mask).float().mean()
    assert agree > 0.95


def test_geometric_augment_is_one_affine_transform_and_identity_at_validation() -> None:
    tfms = geometric_augment()
    assert len(tfms) == 1 and isinstance(tfms[0], AffineCoordTfm)
    x = _ramp()
    assert torch.allclose(tfms[0](x, split_idx=1), x, atol=1e-5)
    assert len(geometric_augment(max_shift=0)[0].aff_fs) < len(tfms[0].aff_fs)
