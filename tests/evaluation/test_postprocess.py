"""Post-processing: plain thresholding, the dual-threshold method (Yuan & Lo 2017, Section
III-A), and LesionSeg's threshold at 128/255 + 3x3 opening (Ramachandram & DeVries 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import disk, footprint_rectangle
from skimage.morphology import opening as grey_opening

from lessons_lib.evaluation.postprocess import (
    FOOTPRINTS,
    POSTPROCESS,
    dual_threshold,
    fill_holes,
    opening,
    threshold,
    threshold_and_open,
)


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _n_components(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=np.ones((3, 3)))[1]


def test_heavier_blob_wins_over_brighter_and_larger_one():
    prob = np.zeros((60, 120))
    big_dim = np.zeros((60, 120), bool)
    big_dim[10:20, 5:15] = True  # area 100 at 0.81: mass 81 (largest area)
    small_bright = np.zeros((60, 120), bool)
    small_bright[30:39, 50:60] = True  # area 90 at 0.99: mass 89.1 (largest mass)
    prob[big_dim] = 0.81
    prob[small_bright] = 0.99
    out = dual_threshold(prob)
    assert out.dtype == bool and out.shape == prob.shape
    assert np.array_equal(out, small_bright)


def test_low_threshold_extends_the_chosen_region():
    prob = np.full((64, 96), 0.05)
    halo = _disk(prob.shape, 30, 40, 15)
    prob[halo] = 0.6
    prob[_disk(prob.shape, 30, 40, 5)] = 0.95
    other = _disk(prob.shape, 10, 85, 4)
    prob[other] = 0.7  # above low only, elsewhere: dropped
    out = dual_threshold(prob)
    assert np.array_equal(out, halo)
    assert np.array_equal(threshold(prob), halo | other)


def test_holes_are_filled():
    prob = np.zeros((50, 50))
    ring = _disk(prob.shape, 25, 25, 15) & ~_disk(prob.shape, 25, 25, 5)
    prob[ring] = 0.9
    out = dual_threshold(prob)
    assert np.array_equal(out, _disk(prob.shape, 25, 25, 15))
    unfilled = dual_threshold(prob, fill_holes=False)
    assert np.array_equal(unfilled, ring)  # centre in the hole: region holding the high region


def test_centre_outside_mask_picks_region_of_high_blob():
    prob = np.zeros((60, 60))
    c_shape = _disk(prob.shape, 30, 26, 20) & ~_disk(prob.shape, 30, 34, 18)  # opens right
    prob[c_shape] = 0.9
    prob[_disk(prob.shape, 30, 55, 3)] = 0.6  # a low-only blob elsewhere
    centroid = ndimage.center_of_mass(c_shape)
    assert not c_shape[round(centroid[0]), round(centroid[1])]
    out = dual_threshold(prob)
    assert np.array_equal(out, c_shape)


def test_result_is_one_component_containing_the_centre():
    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter(rng.random((96, 128)), 6)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    out = dual_threshold(prob)
    assert _n_components(out) == 1
    high = prob > 0.8
    assert (out & high).any()
    assert not (out & (prob <= 0.5) & ~ndimage.binary_fill_holes(prob > 0.5)).any()


def test_no_high_pixel_falls_back_to_heaviest_low_region():
    prob = np.zeros((40, 80))
    prob[5:10, 5:10] = 0.75  # mass 18.75
    prob[20:30, 40:50] = 0.6  # mass 60
    out = dual_threshold(prob)
    expected = np.zeros_like(out)
    expected[20:30, 40:50] = True
    assert np.array_equal(out, expected)


def test_empty_map_gives_empty_mask():
    for prob in (np.zeros((30, 40)), np.full((30, 40), 0.5)):
        out = dual_threshold(prob)
        assert out.shape == (30, 40) and out.dtype == bool and not out.any()


def test_accepts_torch_and_channel_dim():
    prob = np.zeros((1, 20, 20), dtype=np.float32)
    prob[0, 5:15, 5:15] = 0.9
    out = dual_threshold(torch.from_numpy(prob))
    assert out.shape == (20, 20) and out.sum() == 100


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="need low <= high, got low=0.5, high=0.4"):
        dual_threshold(np.zeros((10, 10)), high=0.4, low=0.5)
    with pytest.raises(ValueError, match=r"\(H, W\) probability map, got shape \(2, 10, 10\)"):
        dual_threshold(np.zeros((2, 10, 10)))


def test_fill_holes_with_max_area():
    mask = np.zeros((30, 60), bool)
    mask[2:12, 2:12] = True
    mask[5:7, 5:7] = False  # 4-pixel hole
    mask[2:28, 20:50] = True
    mask[8:20, 28:40] = False  # 144-pixel hole
    assert fill_holes(mask).sum() == mask.sum() + 4 + 144
    small_only = fill_holes(mask, max_area=10)
    assert small_only.sum() == mask.sum() + 4 and small_only[5, 5] and not small_only[10, 30]
    assert np.array_equal(fill_holes(np.zeros((5, 5), bool)), np.zeros((5, 5), bool))


def test_registry():
    prob = np.zeros((20, 20))
    prob[2:6, 2:6] = 0.9
    prob[10:18, 10:18] = 0.6
    assert set(POSTPROCESS) == {"none", "threshold", "dual_threshold", "threshold_and_open"}
    assert POSTPROCESS["none"] is POSTPROCESS["threshold"] is threshold
    assert POSTPROCESS["none"](prob).sum() == 16 + 64
    assert POSTPROCESS["dual_threshold"](prob).sum() == 16


def test_cross_is_skimage_disk_1() -> None:
    np.testing.assert_array_equal(FOOTPRINTS["cross"], disk(1).astype(bool))
    np.testing.assert_array_equal(FOOTPRINTS["square"], np.ones((3, 3), bool))


def test_specks_go_lesion_stays() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5:12, 5:12] = True  # a 7x7 lesion
    mask[16, 16] = True  # a single spurious pixel
    mask[2, 15:17] = True  # a 1x2 speck
    for footprint in ("cross", "square"):
        out = opening(mask, footprint)
        assert not out[16, 16] and not out[2, 15:17].any()
        assert out[6:11, 6:11].all()  # the lesion's interior is kept
        assert not (out & ~mask).any()  # opening never adds a pixel


def test_cross_and_square_differ_on_corners() -> None:
    mask = np.zeros((12, 12), bool)
    mask[3:9, 3:9] = True
    # A square is open under the square element; the cross loses the four corners.
    np.testing.assert_array_equal(opening(mask, "square"), mask)
    cross = opening(mask, "cross")
    assert cross.sum() == mask.sum() - 4
    assert not cross[3, 3] and not cross[8, 8] and cross[3, 4]


def test_one_pixel_bridge_is_cut() -> None:
    mask = np.zeros((10, 21), bool)
    mask[2:8, 1:8] = True
    mask[2:8, 13:20] = True
    mask[5, 8:13] = True  # a 1-pixel-wide bridge
    out = opening(mask, "cross")
    assert not out[5, 9:12].any()  # the bridge's middle is gone (its ends touch the blocks)
    assert out[3:7, 2:7].all() and out[3:7, 14:19].all()


@pytest.mark.parametrize("footprint", ["cross", "square"])
def test_matches_skimage_inside_the_image(footprint: str) -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) > 0.4
    ours = opening(mask, footprint)
    ref = grey_opening(mask, FOOTPRINTS[footprint])
    # Equal away from the border, where the two may treat outside pixels differently.
    np.testing.assert_array_equal(ours[2:-2, 2:-2], ref[2:-2, 2:-2])


@pytest.mark.parametrize("footprint", ["cross", "square"])
def test_lesion_touching_the_border_keeps_its_border(footprint: str) -> None:
    full = np.ones((6, 7), bool)
    np.testing.assert_array_equal(opening(full, footprint), full)
    half = np.zeros((8, 8), bool)
    half[:, :4] = True
    np.testing.assert_array_equal(opening(half, footprint), half)


def test_idempotent_and_anti_extensive() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((30, 30)) > 0.5
    once = opening(mask)
    np.testing.assert_array_equal(opening(once), once)
    assert not (once & ~mask).any()


def test_array_footprint() -> None:
    mask = np.zeros((9, 9), bool)
    mask[2:7, 4] = True  # a vertical line survives a vertical element only
    assert not opening(mask, "cross").any()
    np.testing.assert_array_equal(opening(mask, np.ones((3, 1), bool)), mask)
    np.testing.assert_array_equal(
        opening(mask, footprint_rectangle((3, 1))), opening(mask, np.ones((3, 1), bool))
    )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown footprint"):
        opening(np.zeros((4, 4), bool), "disk")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        opening(np.zeros((2, 4, 4), bool))


def test_threshold_is_128_of_255_inclusive() -> None:
    prob = np.array([[0.49, 0.5, 0.51, 127.4 / 255, 127.6 / 255]])
    out = threshold_and_open(prob, footprint=None)
    np.testing.assert_array_equal(out, [[False, True, True, False, True]])
    # Exactly the pixels whose 8-bit value round(255 p) is at least 128.
    np.testing.assert_array_equal(out, np.round(255 * prob) >= 128)


def test_threshold_then_open() -> None:
    prob = np.zeros((15, 15))
    prob[3:10, 3:10] = 0.9
    prob[13, 13] = 0.95  # a confident but isolated pixel
    out = threshold_and_open(prob)
    assert not out[13, 13] and out[5:8, 5:8].all()
    np.testing.assert_array_equal(out, opening(prob >= 0.5, "cross"))
    lesion = np.zeros((15, 15), bool)
    lesion[3:10, 3:10] = True  # the square lesion is open under the square element
    np.testing.assert_array_equal(threshold_and_open(prob, footprint="square"), lesion)
    # Without the opening the speck stays.
    assert threshold_and_open(prob, footprint=None)[13, 13]


def test_accepts_tensors_and_channel_axis() -> None:
    prob = torch.zeros(1, 8, 8)
    prob[0, 2:6, 2:6] = 0.8
    out = threshold_and_open(prob)
    assert out.shape == (8, 8) and out.dtype == bool and out[3:5, 3:5].all()


def test_every_function_is_in_the_registry_under_its_own_name() -> None:
    # predict records a run's post-processing by function name (predictor.json) and rebuilds it
    # from the same registry the chapters choose from
    for func in (threshold, dual_threshold, threshold_and_open):
        assert POSTPROCESS[func.__name__] is func
