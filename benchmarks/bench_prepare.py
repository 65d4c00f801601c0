"""Benchmark of ``lessons_lib.data.prepare`` against decoding each image fully and resizing it.

Run it with ``python benchmarks/bench_prepare.py`` (or ``make bench``). The ISIC archives
hold JPEGs of up to 20 megapixels; the benchmark writes a few 6000x4000 JPEGs (synthetic
dermoscopy, upscaled) with their 24-megapixel PNG masks and measures pairs per second at a
working size of 512 (shorter side) for: the naive path (full decode, then resize, one process)
and ``prepare`` (JPEG draft-mode decoding, both cores). Target: ``prepare`` at least 5x the
naive throughput. The two are timed in turns, ``repeats`` times, and each keeps its best time,
so that other work on a shared machine disturbs the ratio less.

Both paths decode every mask PNG in full (PNG has no draft mode): that decode, mostly zlib
inflating 24 MB, is now the largest single cost of ``prepare`` (profile it with
``python -m cProfile -s tottime benchmarks/bench_prepare.py``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PIL import Image

from lessons_lib.data import prepare, working_size
from lessons_lib.synth import generate

TARGET_SPEEDUP = 5.0


def make_big_jpegs(root: Path, n: int, size: tuple[int, int] = (6000, 4000)) -> None:
    """Write ``n`` large JPEG/mask pairs in the generic ``folder`` layout."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = generate(i, 600, 400)
        Image.fromarray(image).resize(size, Image.BICUBIC).save(
            root / "images" / f"big{i}.jpg", quality=92
        )
        Image.fromarray(mask).resize(size, Image.NEAREST).save(root / "masks" / f"big{i}.png")


def naive(root: Path, size: int) -> None:
    """Decode every image and mask fully, then resize them (a loader without a cache)."""
    for path in sorted((root / "images").glob("*.jpg")):
        with Image.open(path) as im:
            im = im.convert("RGB")
            target = working_size(*im.size, size)
            im.resize(target, Image.Resampling.LANCZOS)
        with Image.open(root / "masks" / f"{path.stem}.png") as m:
            m.convert("L").resize(target, Image.Resampling.NEAREST)


def run(n: int = 24, size: int = 512, workers: int = 2, repeats: int = 3) -> list[dict]:
    """Time the naive path and ``prepare`` in turns; return table rows."""
    naive_s, prepare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big"
        make_big_jpegs(root, n)
        for repeat in range(repeats):
            start = time.perf_counter()
            naive(root, size)
            naive_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            prepare(
                root,
                "folder",
                size,
                out=Path(tmp) / f"cache{repeat}",
                splits=("train", "valid", "test"),
                workers=workers,
            )
            prepare_s.append(time.perf_counter() - start)
    speedup = min(naive_s) / min(prepare_s)
    return [
        {
            "benchmark": f"naive: full decode + resize of 6000x4000 pairs to {size} (1 process)",
            "value": n / min(naive_s),
            "unit": "pairs/s",
            "target": float("nan"),
            "ok": True,
        },
        {
            "benchmark": f"prepare: draft-mode decode + resize ({workers} workers)",
            "value": n / min(prepare_s),
            "unit": "pairs/s",
            "target": float("nan"),
            "ok": True,
        },
        {
            "benchmark": "prepare speed-up over naive",
            "value": speedup,
            "unit": "x",
            "target": TARGET_SPEEDUP,
            "ok": bool(speedup >= TARGET_SPEEDUP),
        },
    ]


if __name__ == "__main__":
    from table import print_table

    print_table(run())
