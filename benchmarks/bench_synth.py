"""Benchmark of the synthetic dermoscopy generator: images per second on one core.

Run it with ``python benchmarks/bench_synth.py``. Every chapter generates its data in CI, so
the target is 50 images/s at 256x192 (generation alone, and generation plus writing the
JPEG, superpixel map and mask files of :func:`lessons_lib.synth.make_dataset`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lessons_lib.synth import generate, make_dataset

TARGET = 50.0


def _row(name: str, count: int, seconds: float) -> dict:
    rate = count / seconds
    return {
        "benchmark": name,
        "value": rate,
        "unit": "images/s",
        "target": TARGET,
        "ok": rate >= TARGET,
    }


def run(n: int = 60, size: int = 256, repeats: int = 3) -> list[dict]:
    """Time :func:`generate` and :func:`make_dataset` (one process) at ``size`` wide.

    Each measurement is repeated and the best rate is kept, so a busy machine (other jobs
    sharing the core) disturbs the figure less.

    Args:
        n: Images per measurement.
        size: Image width (height is 3/4 of it).
        repeats: Repeats of each measurement.

    Returns:
        Rows ``{"benchmark", "value", "unit", "target", "ok"}``.
    """
    label = f"{size}x{round(size * 3 / 4)}"
    for seed in range(3):  # warm up imports and caches
        generate(seed, size)
    best_gen = best_write = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for seed in range(n):
            generate(seed, size)
        best_gen = min(best_gen, time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            make_dataset(Path(tmp) / "d", n=n, size=size, n_valid=0, n_test=0, size_jitter=0.0)
            best_write = min(best_write, time.perf_counter() - start)
    return [
        _row(f"synth.generate {label}", n, best_gen),
        _row(f"synth.make_dataset {label} (1 worker, jpg+png+superpixels)", n, best_write),
    ]


if __name__ == "__main__":
    from table import print_table

    print_table(run())
