"""Tests of the synthetic dermoscopy generator and dataset writer (lessons_lib.synth)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SYNTH, SYNTH_COUNTS, SYNTH_SEED
from PIL import Image

from lessons_lib.errors import DataError
from lessons_lib.synth import SPLIT_NAMES, SynthConfig, generate, make_dataset

ALL_FACTORS = SynthConfig.NUISANCES + SynthConfig.LESION_FACTORS


def _best_threshold_dice(image: np.ndarray, mask: np.ndarray) -> float:
    """Dice of the best global threshold on the grey level ("darker than t is lesion")."""
    grey = image.astype(np.float32).mean(-1)
    truth = mask > 0
    best = 0.0
    for t in np.linspace(0, 255, 64):
        pred = grey < t
        best = max(best, 2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))
    return best


# --- generate -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_different_seeds_differ():
    image, mask = generate(5)
    again_image, again_mask = generate(5)
    assert image.tobytes() == again_image.tobytes()
    assert mask.tobytes() == again_mask.tobytes()
    other_image, other_mask = generate(6)
    assert not np.array_equal(image, other_image)
    assert not np.array_equal(mask, other_mask)


@pytest.mark.parametrize(
    ("width", "height", "shape"), [(256, None, (192, 256)), (101, 77, (77, 101))]
)
def test_shapes_dtypes_and_mask_values(width, height, shape):
    image, mask = generate(3, width, height)
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    assert mask.shape == shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}


def test_bad_arguments_raise_data_error():
    with pytest.raises(DataError, match="seed"):
        generate(-1)
    with pytest.raises(DataError, match="width"):
        generate(0, width=8)
    with pytest.raises(DataError, match="height"):
        generate(0, width=64, height=4)


@pytest.mark.parametrize("name", SynthConfig.NUISANCES)
def test_each_nuisance_changes_the_image_but_never_the_mask(name):
    for seed in range(3):
        clean_image, clean_mask = generate(seed, 96, config=SynthConfig.none())
        image, mask = generate(seed, 96, config=SynthConfig.only(name))
        assert not np.array_equal(image, clean_image), f"{name} drew nothing for seed {seed}"
        assert np.array_equal(mask, clean_mask), f"{name} changed the mask for seed {seed}"


def test_nuisances_leave_the_mask_alone_in_the_full_config_too():
    no_nuisance = dataclasses.replace(SynthConfig(), **{n: 0.0 for n in SynthConfig.NUISANCES})
    for seed in range(5):
        full_image, full_mask = generate(seed, 96)
        image, mask = generate(seed, 96, config=no_nuisance)
        assert np.array_equal(mask, full_mask)
        assert not np.array_equal(image, full_image)


@pytest.mark.parametrize("name", SynthConfig.LESION_FACTORS)
def test_lesion_factors_change_the_lesion_itself(name):
    _, clean_mask = generate(1, 96, config=SynthConfig.none())
    _, mask = generate(1, 96, config=SynthConfig.only(name))
    assert not np.array_equal(mask, clean_mask)


def test_lesion_sizes_range_from_tiny_to_most_of_the_field():
    areas, touching = [], 0
    for seed in range(200):
        _, mask = generate(seed, 48)
        fg = mask > 0
        areas.append(fg.mean())
        touching += bool(fg[0].any() or fg[-1].any() or fg[:, 0].any() or fg[:, -1].any())
    areas = np.array(areas)
    assert areas.min() > 0, "every image must hold a lesion"
    assert (areas < 0.05).sum() >= 10, "too few small lesions"
    assert (areas > 0.5).sum() >= 10, "too few large lesions"
    assert 20 <= touching <= 180, "some, not all, lesions should reach the image border"


def test_clean_config_gives_centred_medium_smooth_lesions():
    for seed in range(5):
        _, mask = generate(seed, 96, config=SynthConfig.none())
        fg = mask > 0
        assert 0.1 < fg.mean() < 0.3
        ys, xs = np.nonzero(fg)
        assert abs(ys.mean() / 72 - 0.5) < 0.1 and abs(xs.mean() / 96 - 0.5) < 0.1


def test_lesion_is_darker_than_skin_but_a_threshold_does_not_solve_it():
    darker, dices = 0, []
    for seed in range(40):
        image, mask = generate(seed, 96)
        grey = image.astype(np.float32).mean(-1)
        fg = mask > 0
        darker += grey[fg].mean() < grey[~fg].mean()
        dices.append(_best_threshold_dice(image, mask))
    assert darker >= 34, f"lesion darker than the skin in only {darker}/40 images"
    assert np.mean(dices) < 0.9, "a grey-level threshold already segments the data"
    assert np.mean(dices) > 0.5, "the lesion should still stand out on average"
    assert min(dices) < 0.7, "expected some genuinely hard images"


def test_clean_images_are_easy_for_a_threshold():
    dices = [_best_threshold_dice(*generate(s, 96, config=SynthConfig.none())) for s in range(5)]
    assert min(dices) > 0.85


# --- SynthConfig ----------------------------------------------------------------------------


def test_factors_are_the_config_fields_each_in_one_group():
    """The two groups the tests above are parametrised by name every field once."""
    fields = [f.name for f in dataclasses.fields(SynthConfig)]
    assert sorted(ALL_FACTORS) == sorted(fields) and len(set(ALL_FACTORS)) == len(fields)
    assert SynthConfig.LESION_FACTORS == ("irregular_border", "lesion_size")
    assert {"hair", "ruler"} <= set(SynthConfig.NUISANCES)


def test_config_none_only_and_validation():
    assert all(v == 0.0 for v in SynthConfig.none().to_dict().values())
    only = SynthConfig.only("hair", "ruler").to_dict()
    assert only["hair"] == only["ruler"] == 1.0
    assert sum(only.values()) == 2.0
    assert set(SynthConfig().to_dict()) == set(ALL_FACTORS)
    with pytest.raises(DataError, match="unknown"):
        SynthConfig.only("glare")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        SynthConfig(hair=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SynthConfig().hair = 0.0  # type: ignore[misc]
    cfg = SynthConfig(hair=0.3, vignette=0.0)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataError, match="unknown"):
        SynthConfig.from_dict({"hairs": 1.0})


# --- make_dataset ---------------------------------------------------------------------------


# ``synthetic_root`` is the session's shared synthetic dataset (see conftest), written by
# chapter.get_data with 1 worker from helpers' SYNTH and SYNTH_SEED.
COUNTS = tuple(SYNTH_COUNTS[s] for s in ("train", "valid", "test"))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_dataset_layout_is_isic_2017(synthetic_root):
    expected = {f"ISIC-2017_{s}_{k}" for s in SPLIT_NAMES for k in ("Data", "Part1_GroundTruth")}
    assert {p.name for p in synthetic_root.iterdir() if p.is_dir()} == expected
    assert not [p for p in synthetic_root.rglob(".*")], "temporary files were left behind"
    all_ids = []
    for split, count in zip(SPLIT_NAMES, COUNTS, strict=True):
        data, truth = (
            synthetic_root / f"ISIC-2017_{split}_Data",
            synthetic_root / f"ISIC-2017_{split}_Part1_GroundTruth",
        )
        images = sorted(p for p in data.glob("ISIC_*.jpg"))
        ids = [p.stem for p in images]
        assert len(ids) == count and all(len(i) == 12 and i[5:].isdigit() for i in ids)
        assert sorted(p.name for p in data.glob("*_superpixels.png")) == [
            f"{i}_superpixels.png" for i in ids
        ]
        assert sorted(p.name for p in truth.iterdir()) == [f"{i}_segmentation.png" for i in ids]
        with open(data / f"ISIC-2017_{split}_Data_metadata.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["image_id"] for r in rows] == ids
        assert set(rows[0]) == {"image_id", "age_approximate", "sex"}
        for image_path in images:
            image = Image.open(image_path)
            mask = Image.open(truth / f"{image_path.stem}_segmentation.png")
            superpixels = Image.open(data / f"{image_path.stem}_superpixels.png")
            assert image.format == "JPEG" and image.mode == "RGB"
            assert mask.mode == "L" and mask.size == image.size == superpixels.size
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
            assert image.size[1] == round(image.size[0] * 3 / 4)
            assert SYNTH["size"] * 0.8 - 1 <= image.size[0] <= SYNTH["size"] * 1.2 + 1
        all_ids += ids
    assert len(set(all_ids)) == len(all_ids) == sum(COUNTS)
    widths = {Image.open(p).size[0] for p in synthetic_root.rglob("ISIC_*.jpg")}
    assert len(widths) > 1, "image widths should vary"


def test_synth_json_records_everything_needed_to_reproduce(synthetic_root):
    record = json.loads((synthetic_root / "synth.json").read_text())
    assert (record["n"], record["n_valid"], record["n_test"]) == COUNTS
    expected = (SYNTH["size"], SYNTH_SEED, 0.2)
    assert (record["size"], record["seed"], record["size_jitter"]) == expected
    assert record["config"] == SynthConfig().to_dict()
    for split in SPLIT_NAMES:
        on_disk = sorted(
            p.stem for p in (synthetic_root / f"ISIC-2017_{split}_Data").glob("ISIC_*.jpg")
        )
        assert record["ids"][split] == on_disk
    row = record["images"]["Validation"][0]
    _, mask = generate(
        row["seed"], row["width"], row["height"], SynthConfig.from_dict(record["config"])
    )
    truth_dir = synthetic_root / "ISIC-2017_Validation_Part1_GroundTruth"
    truth = truth_dir / f"{row['id']}_segmentation.png"
    assert np.array_equal(np.asarray(Image.open(truth)), mask)


def test_dataset_is_deterministic_whatever_the_workers(synthetic_root, tmp_path):
    # the shared synthetic_root was written with 1 worker: write it again with 2
    again = make_dataset(tmp_path / "again", **SYNTH, seed=SYNTH_SEED, workers=2)
    assert _files(again) == _files(synthetic_root)
    other = make_dataset(tmp_path / "other", **SYNTH, seed=SYNTH_SEED + 1)
    assert _files(other) != _files(synthetic_root)


def test_rewriting_removes_stale_images_and_foreign_folders_are_refused(tmp_path):
    root = make_dataset(tmp_path / "d", n=8, size=32, n_valid=1, n_test=1)
    make_dataset(root, n=4, size=32, n_valid=1, n_test=1)
    assert len(list((root / "ISIC-2017_Training_Data").glob("ISIC_*.jpg"))) == 4
    assert len(list((root / "ISIC-2017_Training_Part1_GroundTruth").iterdir())) == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        make_dataset(tmp_path / "mine", n=2, size=32)
    with pytest.raises(DataError, match="Training = 0 is not a valid count"):
        make_dataset(tmp_path / "bad", n=0)


def test_the_course_loaders_read_it(synthetic_root):
    from lessons_lib.data.layouts import detect_dataset, find_pairs

    assert detect_dataset(synthetic_root) == "synthetic"
    for name in ("isic2017", "synthetic"):
        counts = tuple(len(find_pairs(synthetic_root, name, s)) for s in ("train", "valid", "test"))
        assert counts == COUNTS
