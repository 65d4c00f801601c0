"""LesionSeg post-processing (Ramachandram & DeVries 2017, Section 3.4): threshold at 128/255,
then a 3x3 morphological opening."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.morphology import disk, footprint_rectangle
from skimage.morphology import opening as grey_opening

from lessons_lib.evaluation import FOOTPRINTS, opening, threshold_and_open
from lessons_lib.evaluation.postprocess import POSTPROCESS


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


def test_not_in_the_registry_of_paper_defaults() -> None:
    # POSTPROCESS holds the post-processings applied after a ">" threshold; this one is a
    # chapter's own choice of threshold and footprint, called directly.
    assert threshold_and_open not in POSTPROCESS.values()
