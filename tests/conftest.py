"""Shared fixtures: tiny datasets written on the fly, and the real samples (skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real dermoscopy samples beside the repo (never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real samples not present at {SHARED_DATA} (team-internal data)")
    return SHARED_DATA


def write_pair(image: Path, mask: Path, w: int = 40, h: int = 30, seed: int = 0) -> None:
    """Write a random RGB image and a 0/255 elliptical mask of size ``w x h``."""
    rng = np.random.default_rng(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1
    Image.fromarray(m.astype(np.uint8) * 255).save(mask)


@pytest.fixture
def isic2017_root(tmp_path: Path) -> Path:
    """A 3-split ISIC 2017 layout with the superpixel and metadata files the archive has."""
    root = tmp_path / "isic2017"
    n = 0
    for split in ("Training", "Validation", "Test_v2"):
        for _ in range(3):
            stem = f"ISIC_{n:07d}"
            data = root / f"ISIC-2017_{split}_Data"
            gt = root / f"ISIC-2017_{split}_Part1_GroundTruth"
            write_pair(data / f"{stem}.jpg", gt / f"{stem}_segmentation.png", seed=n)
            Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(data / f"{stem}_superpixels.png")
            n += 1
        (data / f"ISIC-2017_{split}_Data_metadata.csv").write_text("image_id,age\n")
    return root
