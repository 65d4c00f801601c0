"""Per-image standardisation (Ramachandram & DeVries 2017, LesionSeg, Section 3.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastai.data.transforms import IntToFloatTensor
from fastai.torch_core import TensorImage, TensorMask
from fasttransform import Pipeline

from lessons_lib.transforms import PerImageStandardize, per_image_standardization


def _tf_formula(img: np.ndarray) -> np.ndarray:
    """TensorFlow's documented formula, by hand: (x - mean) / max(std, 1 / sqrt(N))."""
    n = img.size
    mean = img.sum() / n
    std = math.sqrt(((img - mean) ** 2).sum() / n)
    return (img - mean) / max(std, 1 / math.sqrt(n))


def test_hand_made_image() -> None:
    # 1 channel, 2x2: mean 2.5, population std sqrt(1.25).
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    expected = (x - 2.5) / math.sqrt(1.25)
    assert torch.allclose(per_image_standardization(x), expected)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 4, 6)])
def test_matches_the_formula(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    out = per_image_standardization(torch.from_numpy(x)).numpy()
    images = x.reshape(-1, *shape[-3:])
    for got, img in zip(out.reshape(images.shape), images, strict=True):
        np.testing.assert_allclose(got, _tf_formula(img), atol=1e-12)
        assert abs(got.mean()) < 1e-12 and got.std() == pytest.approx(1.0)


def test_each_image_of_a_batch_on_its_own() -> None:
    torch.manual_seed(0)
    a, b = torch.rand(3, 8, 8), 10 * torch.rand(3, 8, 8) + 5
    batch = per_image_standardization(torch.stack([a, b]))
    assert torch.allclose(batch[0], per_image_standardization(a), atol=1e-6)
    assert torch.allclose(batch[1], per_image_standardization(b), atol=1e-6)


def test_channels_are_standardised_together() -> None:
    x = torch.stack([torch.zeros(4, 4), torch.ones(4, 4), 2 * torch.ones(4, 4)])
    out = per_image_standardization(x)
    # Channel means differ after standardisation: not per-channel normalisation.
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor([-1.0, 0.0, 1.0]) * math.sqrt(1.5))


def test_scale_invariant_like_0_255_images() -> None:
    torch.manual_seed(1)
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(per_image_standardization(x), per_image_standardization(255 * x))


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_constant_image_gives_zeros(value: float) -> None:
    out = per_image_standardization(torch.full((3, 6, 6), value))
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros_like(out))


def test_std_floor_is_one_over_sqrt_n() -> None:
    x = torch.zeros(1, 10, 10, dtype=torch.float64)
    x[0, 0, 0] = 1e-4  # std far below the floor 1/sqrt(100) = 0.1
    out = per_image_standardization(x)
    assert torch.allclose(out, (x - x.mean()) / 0.1)


@pytest.mark.parametrize("bad", [torch.zeros(4, 4), torch.zeros(1, 1, 1, 4, 4)])
def test_bad_shapes(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expected"):
        per_image_standardization(bad)


def test_integer_input_is_refused() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        per_image_standardization(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_transform_standardises_images_and_leaves_masks() -> None:
    torch.manual_seed(0)
    image = TensorImage(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
    mask = TensorMask(torch.randint(0, 2, (2, 8, 8)))
    pipe = Pipeline([IntToFloatTensor(), PerImageStandardize()])
    out_image, out_mask = pipe((image, mask))
    assert isinstance(out_image, TensorImage)
    expected = per_image_standardization(image.float() / 255)
    assert torch.allclose(out_image, expected, atol=1e-5)
    assert isinstance(out_mask, TensorMask) and torch.equal(out_mask, mask)
    assert PerImageStandardize.order > IntToFloatTensor.order


def test_transform_runs_on_validation_batches_too() -> None:
    tfm = PerImageStandardize()
    x = TensorImage(torch.rand(1, 3, 4, 4))
    assert torch.allclose(tfm(x, split_idx=1), per_image_standardization(x))


def test_decodes_rescales_to_unit_range_for_display() -> None:
    torch.manual_seed(0)
    x = TensorImage(torch.randn(2, 3, 5, 5))
    shown = PerImageStandardize().decode(x)
    assert torch.allclose(shown.amin(dim=(1, 2, 3)), torch.zeros(2))
    assert torch.allclose(shown.amax(dim=(1, 2, 3)), torch.ones(2))
