"""The classical Otsu baseline: beats the trivial baselines, handles degenerate images."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from helpers import SYNTH_COUNTS
from PIL import Image

from lessons_lib.baseline import (
    CHANNELS,
    ClassicalBaseline,
    frame_mask,
    otsu_segment,
    otsu_steps,
)
from lessons_lib.data import read_mask
from lessons_lib.metrics import jaccard
from lessons_lib.synth import SynthConfig, generate


def _mean_ja(seeds, predict) -> float:
    scores = []
    for seed in seeds:
        image, mask = generate(seed, 160)
        scores.append(jaccard(mask, predict(image)))
    return float(np.mean(scores))


def test_beats_trivial_baselines_on_synthetic_images():
    seeds = range(500, 520)
    ours = _mean_ja(seeds, otsu_segment)
    all_lesion = _mean_ja(seeds, lambda im: np.ones(im.shape[:2], bool))
    all_skin = _mean_ja(seeds, lambda im: np.zeros(im.shape[:2], bool))
    assert all_skin == 0.0  # every synthetic image has a lesion
    assert ours > all_lesion + 0.25, (ours, all_lesion)
    assert ours > 0.6, ours


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_finds_a_clean_lesion(channel):
    image, mask = generate(3, 160, config=SynthConfig.none())
    assert jaccard(mask, otsu_segment(image, channel=channel)) > 0.8


def test_shape_dtype_and_input_kinds():
    image, _ = generate(7, 200)  # 200 x 150
    out = otsu_segment(image)
    assert out.shape == image.shape[:2] and out.dtype == bool
    as_float = otsu_segment(image.astype(np.float32) / 255)
    assert as_float.shape == out.shape and jaccard(out, as_float) > 0.95
    grey = otsu_segment(image.mean(-1).astype(np.uint8))
    assert grey.shape == out.shape and grey.dtype == bool
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1)
    assert (otsu_segment(rgba) == out).all()


def test_large_image_is_segmented_at_working_size_and_returned_full_size():
    image, mask = generate(11, 160, config=SynthConfig.none())
    big = np.repeat(np.repeat(image, 4, 0), 4, 1)  # 640 x 480
    out = otsu_segment(big, work_size=120)
    assert out.shape == big.shape[:2]
    assert jaccard(np.repeat(np.repeat(mask, 4, 0), 4, 1), out) > 0.8


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_image_gives_an_empty_mask(value):
    out = otsu_segment(np.full((60, 80, 3), value, np.uint8))
    assert out.shape == (60, 80) and out.dtype == bool and not out.any()


def test_all_options_off_still_returns_a_mask():
    image, _ = generate(5, 120)
    out = otsu_segment(
        image,
        work_size=None,
        hair_radius=0,
        blur_sigma=0,
        frame_level=0,
        opening_radius=0,
        closing_radius=0,
        flatten=0,
        fill_holes=False,
    )
    assert out.shape == image.shape[:2] and out.any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="channel"):
        otsu_segment(np.zeros((20, 20, 3), np.uint8), channel="red")
    with pytest.raises(ValueError, match="RGB"):
        otsu_segment(np.zeros((20, 20, 2), np.uint8))


def test_frame_is_removed_and_interior_lesion_preferred():
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    image = np.full((h, w, 3), 200, np.uint8)
    image[np.hypot(yy - h / 2, xx - w / 2) > 75] = 5  # black dermoscope frame in the corners
    lesion = np.hypot(yy - 60, xx - 80) < 20
    image[lesion] = (120, 80, 60)
    edge_blob = np.hypot(yy - 60, xx - 0) < 12  # a dark blob cut by the image border
    image[edge_blob] = (110, 70, 50)
    frame = frame_mask(image / 255.0)
    assert frame[0, 0] and not frame[60, 80]
    out = otsu_segment(image)
    assert jaccard(lesion, out) > 0.85
    assert not out[:, 0].any()


def test_border_touching_lesion_is_kept_when_it_is_the_only_one():
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    image = np.full((h, w, 3), 210, np.uint8)
    lesion = np.hypot(yy - 60, xx - 150) < 45  # crosses the right edge
    image[lesion] = (120, 80, 60)
    assert jaccard(lesion, otsu_segment(image)) > 0.85


def test_steps_end_in_the_mask():
    image, _ = generate(9, 160)
    steps = otsu_steps(image, work_size=60)
    for key in ("image", "channel", "smoothed", "frame", "first", "corrected", "threshold"):
        assert steps[key].shape[:2] == (60, 80)
    final = otsu_segment(image, work_size=60)
    assert final.shape == image.shape[:2]
    grown = np.repeat(np.repeat(steps["mask"], 2, 0), 2, 1)
    assert jaccard(grown, final) > 0.9
    with pytest.raises(TypeError, match="unknown option"):
        otsu_steps(image, radius=3)


def test_dataclass_defaults_match_the_function():
    params = inspect.signature(otsu_segment).parameters
    fields = {f.name: f.default for f in dataclasses.fields(ClassicalBaseline)}
    assert fields == {k: p.default for k, p in params.items() if k != "image"}


def test_evaluate_scores_at_original_size(synthetic_data, tmp_path):
    _, data = synthetic_data
    per_image, summary, small = ClassicalBaseline().evaluate(
        data, "test", save_dir=tmp_path / "pred"
    )
    assert list(per_image.index) == [e["id"] for e in data.entries("test")]
    assert summary["n_images"] == SYNTH_COUNTS["test"] and 0 <= summary["jaccard"] <= 1
    assert set(small) == set(per_image.index)
    saved = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert saved == [f"{i}_segmentation.png" for i in per_image.index]
    for entry in data.entries("test"):  # written and scored at the original image's size
        with Image.open(tmp_path / "pred" / f"{entry['id']}_segmentation.png") as png:
            assert list(png.size) == entry["orig_size"]
            mask = np.asarray(png) > 127
        assert per_image.loc[entry["id"], "jaccard"] == pytest.approx(
            jaccard(read_mask(entry["orig_mask"]), mask)
        )
