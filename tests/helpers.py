"""Helpers the tests import (``pythonpath = tests`` in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_pair(image: Path, mask: Path, w: int = 40, h: int = 30, seed: int = 0) -> None:
    """Write a random RGB image and a 0/255 elliptical mask of size ``w x h``."""
    rng = np.random.default_rng(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1
    Image.fromarray(m.astype(np.uint8) * 255).save(mask)
