"""Benchmark of scoring folders of masks: ``lessons_lib`` against the official scorer.

Run it with ``python benchmarks/bench_score.py``. 600 ground-truth/prediction pairs of
full-size masks (4:3 and 3:4, about 4000x3000, the sizes of ISIC images) are generated once into
``<cache>/bench/score-masks-...`` (``$LESSONS_CACHE`` or ``~/.cache/lessons_lib``): a lesion-like
blob per truth (a smooth closed outline, not noise: PNG decoding time depends on the content),
and a prediction that moves, scales and reshapes it, misses it (an empty mask) or adds a second
blob. Both scorers read the same files:

* ``isic_challenge_scoring.segmentation.SegmentationScore.from_dir``, the official scorer of the
  ISIC 2016-2018 challenges (one process);
* ``lessons_lib.metrics.score_dirs_scorer`` on 2 worker processes (each file decoded once).

The pairs are split into 6 folders of 100, scored in turns by the two, so that other work on
a shared machine slows both alike. Targets: identical numbers (every per-image metric and every
mean within 1e-9; the official per-image values come from the official confusion matrices and
metric functions) and at least 3x the official throughput.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from lessons_lib.atomic import cache_dir, write_json, write_with
from lessons_lib.metrics import METRIC_NAMES, score_dirs_scorer

N_PAIRS, N_FOLDERS = 600, 6
TARGET_SPEEDUP, TOLERANCE = 3.0, 1e-9
SIZES = [(4000, 3000), (3872, 2592), (4288, 2848), (3024, 4032), (3000, 4000)]  # (w, h)


def _blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx, cy, radius) -> None:
    """A lesion-like region: a closed outline with a few smooth harmonics, filled with 255."""
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.uniform(0, 0.25 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    points = np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], 1)
    draw.polygon([tuple(p) for p in points], fill=255)


def _write_pair(job: tuple[int, str]) -> None:
    i, folder = job
    rng = np.random.default_rng(i)
    w, h = SIZES[i % len(SIZES)]
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    radius = min(w, h) * rng.uniform(0.1, 0.35)
    truth, pred = Image.new("L", (w, h), 0), Image.new("L", (w, h), 0)
    _blob(ImageDraw.Draw(truth), rng, cx, cy, radius)
    kind = rng.uniform()
    if kind >= 0.05:  # 5%: the lesion is missed (an empty prediction)
        shift = rng.normal(0, 0.15 * radius, 2)
        draw = ImageDraw.Draw(pred)
        _blob(draw, rng, cx + shift[0], cy + shift[1], radius * rng.uniform(0.7, 1.3))
        if kind > 0.9:  # 10%: a second, false, region
            _blob(draw, rng, w * rng.uniform(0.1, 0.9), h * rng.uniform(0.1, 0.9), radius / 3)
    name = f"ISIC_{i:07d}_segmentation.png"
    write_with(Path(folder) / "truth" / name, lambda p: truth.save(p, "PNG"))
    write_with(Path(folder) / "pred" / name, lambda p: pred.save(p, "PNG"))


def mask_folders(n: int = N_PAIRS, folders: int = N_FOLDERS, workers: int = 2) -> list[Path]:
    """``folders`` folders, each with ``truth/`` and ``pred/`` masks, ``n`` pairs in all; made
    once (a ``complete.json`` marks a finished set) and cached."""
    root = cache_dir() / "bench" / f"score-masks-{n}x{folders}-v1"
    parts = [root / f"part{k}" for k in range(folders)]
    if not (root / "complete.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        jobs = [(i, str(parts[i % folders])) for i in range(n)]
        print(f"writing {n} mask pairs into {root} (once)...", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_pair, jobs, chunksize=4))
        write_json(root / "complete.json", {"pairs": n, "folders": folders, "sizes": SIZES})
    return parts


def official_scores(truth: Path, pred: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The official scorer's per-image metrics and macro averages of one folder pair.

    ``SegmentationScore.from_dir`` keeps only the means, so its confusion matrices are
    recorded as it computes them (a wrapper around its own function, keeping 4 numbers per
    image) and turned into per-image metrics by the official metric functions, as its
    constructor does.
    """
    from isic_challenge_scoring import metrics, segmentation

    recorded = []
    original = segmentation.create_binary_confusion_matrix

    def record(*args, **kwargs):
        recorded.append(original(*args, **kwargs))
        return recorded[-1]

    segmentation.create_binary_confusion_matrix = record
    try:
        score = segmentation.SegmentationScore.from_dir(truth, pred)
    finally:
        segmentation.create_binary_confusion_matrix = original
    cms = pd.DataFrame(recorded)
    per_image = pd.DataFrame(
        {
            "accuracy": cms.apply(metrics.binary_accuracy, axis="columns"),
            "sensitivity": cms.apply(metrics.binary_sensitivity, axis="columns"),
            "specificity": cms.apply(metrics.binary_specificity, axis="columns"),
            "dice": cms.apply(metrics.binary_dice, axis="columns"),
            "jaccard": cms.apply(metrics.binary_jaccard, axis="columns"),
            "threshold_jaccard": cms.apply(
                metrics.binary_threshold_jaccard, threshold=0.65, axis="columns"
            ),
        }
    )
    return per_image, score.macro_average


def run(workers: int = 2) -> list[dict]:
    """Score every folder with both scorers, in turns; compare numbers and throughput."""
    import warnings

    folders = mask_folders()
    for path in sorted(p for folder in folders for p in folder.rglob("*.png")):
        path.read_bytes()  # both scorers start with the files in the page cache
    ours_s = official_s = 0.0
    ours, official, official_means = [], [], []
    for folder in folders:
        start = time.perf_counter()
        scorer = score_dirs_scorer(folder / "truth", folder / "pred", workers=workers)
        ours_s += time.perf_counter() - start
        ours.append(scorer.per_image())
        with warnings.catch_warnings():  # the official scorer's pandas keyword; not our code
            warnings.simplefilter("ignore", FutureWarning)
            start = time.perf_counter()
            per_image, means = official_scores(folder / "truth", folder / "pred")
            official_s += time.perf_counter() - start
        official.append(per_image)
        official_means.append(means * len(per_image))
    ours_all, official_all = pd.concat(ours), pd.concat(official)
    n = len(ours_all)
    same_ids = list(official_all.index) == list(ours_all.index)
    per_image_diff = (ours_all[list(METRIC_NAMES)] - official_all[list(METRIC_NAMES)]).abs()
    mean_diff = (ours_all.mean() - sum(official_means) / n)[list(METRIC_NAMES)].abs()
    diff = max(per_image_diff.to_numpy().max(), mean_diff.max()) if same_ids else np.inf
    speedup = official_s / ours_s
    return [
        _row(f"official isic-challenge-scoring: {n} pairs of ~4000x3000 masks", n / official_s),
        _row(f"lessons_lib score_dirs: the same pairs ({workers} workers)", n / ours_s),
        {
            "benchmark": "scoring: largest difference from the official numbers",
            "value": float(diff),
            "unit": "|diff|",
            "target": TOLERANCE,
            "ok": bool(diff <= TOLERANCE),
        },
        {
            "benchmark": "scoring speed-up over the official scorer",
            "value": speedup,
            "unit": "x",
            "target": TARGET_SPEEDUP,
            "ok": bool(speedup >= TARGET_SPEEDUP),
        },
    ]


def _row(name: str, value: float) -> dict:
    return {"benchmark": name, "value": value, "unit": "pairs/s", "target": np.nan, "ok": True}


if __name__ == "__main__":
    from table import print_table

    print_table(run())
