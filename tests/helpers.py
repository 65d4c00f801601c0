"""Helpers the tests import (``pythonpath = tests`` in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lessons_lib.training.optim import AdamSpec

# The shared synthetic dataset (conftest's ``synthetic_root`` / ``synthetic_data``): what
# ``chapter.get_data("synthetic", None, SYNTH_PREPARE_SIZE, synth=SYNTH, seed=SYNTH_SEED,
# workers=1)`` generates (8 training, 2 validation, 2 test images about 64 px wide) and prepares.
SYNTH = {"n": 8, "size": 64}
SYNTH_COUNTS = {"train": 8, "valid": 2, "test": 2}  # what make_dataset's defaults give for n=8
SYNTH_SEED = 3  # not get_data's default, so tests see that the seed is passed through
SYNTH_PREPARE_SIZE = 48

# The optimiser of the library's tests (a chapter's comes from its recipe): fastai's Adam, written
# out, so that tests train as they did before optimisers had to be declared.
ADAM = AdamSpec(
    beta1=0.9, beta2=0.99, eps=1e-5, weight_decay=0.01, decoupled=True, decay_bn_and_bias=False
)


def write_pair(image: Path, mask: Path, w: int = 40, h: int = 30, seed: int = 0) -> None:
    """Write a random RGB image and a 0/255 elliptical mask of size ``w x h``."""
    rng = np.random.default_rng(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1
    Image.fromarray(m.astype(np.uint8) * 255).save(mask)


def run_differences(first: Path, second: Path) -> list[str]:
    """What differs between two runs of a chapter with the same parameters (the determinism
    check): the evaluations' metrics in ``metrics.json``, and every per-image score and training
    history CSV, compared to the last bit. Timings and environment are not compared.

    Returns:
        One line per difference; empty when the runs agree.
    """
    import json

    import pandas as pd

    def scores(run: Path) -> dict:
        record = json.loads((run / "metrics.json").read_text())
        return {r["name"]: r["metrics"] for r in record["results"]}

    def tables(run: Path) -> set[str]:
        found = [*run.rglob("per_image*.csv"), *run.rglob("history.csv")]
        return {str(p.relative_to(run)) for p in found}

    problems = []
    a, b = scores(first), scores(second)
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            keys = sorted(
                k
                for k in {*a.get(name, {}), *b.get(name, {})}
                if a.get(name, {}).get(k) != b.get(name, {}).get(k)
            )
            problems.append(f"metrics.json, evaluation {name!r}: {', '.join(keys)} differ")
    names_a, names_b = tables(first), tables(second)
    for name in sorted(names_a ^ names_b):
        problems.append(f"{name}: in one run only")
    for name in sorted(names_a & names_b):
        x, y = pd.read_csv(first / name), pd.read_csv(second / name)
        if not x.equals(y):
            problems.append(f"{name}: values differ")
    return problems
