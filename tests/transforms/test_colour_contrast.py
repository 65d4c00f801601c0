"""Colour channels and per-channel contrast augmentation (Yuan & Lo 2017, Section II, III-B)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.data.transforms import IntToFloatTensor, Normalize
from fastai.torch_core import TensorImage, TensorMask
from fasttransform import Pipeline
from skimage.color import rgb2hsv, rgb2lab

from lessons_lib.transforms import (
    CDNNChannels,
    RandomChannelContrast,
    percentile_stretch,
    random_channel_contrast,
    rgb_to_cdnn7,
)


def _images(seed: int = 0) -> np.ndarray:
    """(2, 24, 32, 3) RGB in [0, 1] on the 8-bit grid, with grey, black, white and tied pixels."""
    rng = np.random.default_rng(seed)
    img = np.round(rng.random((2, 24, 32, 3)) * 255) / 255
    special = [
        [0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 1, 0.2], [0.2, 1, 1], [1, 0.2, 1],
        [0.3, 0.3, 0.9], [0.001, 0.002, 0.003], [0.9, 0.1, 0.1], [0.1, 0.1, 0.0],
    ]  # fmt: skip
    img[0, 0, : len(special)] = special
    return img


def _reference(img: np.ndarray) -> np.ndarray:
    return np.concatenate([img, rgb2hsv(img), rgb2lab(img)[..., :1] / 100.0], axis=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seven_channels_match_skimage(dtype):
    img = _images()
    out = rgb_to_cdnn7(torch.from_numpy(img).permute(0, 3, 1, 2).to(dtype))
    assert out.shape == (2, 7, 24, 32) and out.dtype == dtype
    for i in range(2):
        ref = _reference(img[i])
        got = out[i].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4 if dtype == torch.float32 else 1e-9)
    assert out.min() >= 0 and out.max() <= 1


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match=r"expected RGB images .*got shape \(1, 4, 8, 8\)"):
        rgb_to_cdnn7(torch.rand(1, 4, 8, 8))


def test_cdnn_channels_transform_on_images_not_masks():
    x = TensorImage(torch.rand(2, 3, 16, 16))
    tfm = CDNNChannels()
    y = tfm(x)
    assert isinstance(y, TensorImage) and y.shape == (2, 7, 16, 16) and tfm.n_channels == 7
    assert torch.equal(y[:, :3], x)
    assert torch.equal(tfm.decode(y), x)  # decodes keeps RGB for show_batch
    mask = TensorMask(torch.ones(2, 16, 16, dtype=torch.long))
    assert tfm(mask) is mask


def test_rgb_mode_is_identity():
    x = TensorImage(torch.rand(2, 3, 16, 16))
    tfm = CDNNChannels("rgb")
    assert tfm(x) is x and tfm.n_channels == 3
    with pytest.raises(ValueError, match="channels must be 'rgbhsvl' or 'rgb', got 'hsv'"):
        CDNNChannels("hsv")


def test_cdnn_channels_runs_before_normalize():
    assert IntToFloatTensor.order < CDNNChannels.order < RandomChannelContrast.order
    assert RandomChannelContrast.order < Normalize.order
    stats = torch.full((1, 7, 1, 1), 0.5)
    pipe = Pipeline([Normalize(stats, stats), RandomChannelContrast(), CDNNChannels()])
    assert [type(t) for t in pipe.fs] == [CDNNChannels, RandomChannelContrast, Normalize]
    normalised = TensorImage(torch.randn(2, 3, 16, 16) * 2)
    with pytest.raises(ValueError, match="before Normalize"):
        CDNNChannels()(normalised)


def test_percentile_stretch_matches_numpy_fig1_window():
    x = torch.rand(2, 7, 20, 30, dtype=torch.float64)
    got = percentile_stretch(x, 5.0, 95.0).numpy()
    arr = x.numpy()
    lo = np.percentile(arr, 5, axis=(2, 3), keepdims=True)
    hi = np.percentile(arr, 95, axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(got, np.clip((arr - lo) / (hi - lo), 0, 1), atol=1e-12)


def test_percentile_stretch_leaves_constant_channels():
    x = torch.rand(1, 2, 8, 8)
    x[0, 1] = 0.3
    out = percentile_stretch(x, 0.0, 100.0)
    assert torch.equal(out[0, 1], x[0, 1])
    assert out[0, 0].min() == 0 and out[0, 0].max() == 1


def test_random_contrast_training_behaviour():
    torch.manual_seed(0)
    x = TensorImage(torch.rand(4, 7, 32, 32) * 0.6 + 0.2)
    tfm = RandomChannelContrast(p=1.0)
    a, b = tfm(x, split_idx=0), tfm(x, split_idx=0)
    assert isinstance(a, TensorImage) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)  # a new random window at every call
    assert not torch.allclose(a, x)
    # windows drawn in [0, 5] and [95, 100] percentiles: at most ~5 % of pixels saturate per side
    n = 32 * 32
    assert ((a == 0).flatten(2).sum(-1) <= 0.05 * n + 1).all()
    assert ((a == 1).flatten(2).sum(-1) <= 0.05 * n + 1).all()


def test_random_contrast_is_identity_at_validation_and_on_masks():
    x = TensorImage(torch.rand(2, 7, 16, 16))
    tfm = RandomChannelContrast(p=1.0)
    assert torch.equal(tfm(x, split_idx=1), x)
    mask = TensorMask(torch.ones(2, 16, 16, dtype=torch.long))
    assert torch.equal(tfm(mask, split_idx=0), mask)
    assert torch.equal(RandomChannelContrast(p=0.0)(x, split_idx=0), x)


def test_random_contrast_windows_are_per_channel():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 32, 32).expand(2, 7, 32, 32).contiguous()  # identical channels/images
    out = random_channel_contrast(x, low=(0.0, 20.0), high=(80.0, 100.0), generator=g)
    flat = out.flatten(0, 1)
    assert not any(torch.allclose(flat[0], flat[i]) for i in range(1, 14))
    with pytest.raises(ValueError, match="need 0 <= low <= high <= 100"):
        random_channel_contrast(x, low=(0.0, 60.0), high=(50.0, 100.0))
