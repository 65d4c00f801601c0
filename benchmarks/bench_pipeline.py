"""Benchmark of the input pipeline: how many data-loader workers each chapter's full profile needs.

Run it with ``python benchmarks/bench_pipeline.py [chapter ...]``. For each chapter and training
resolution of its recipe's full profile (``chapters.py``), the chapter's own fastai pipeline
(``lessons_lib.training.segmentation_dls`` with the recipe's augmentation, input transforms and
normalisation, on the CPU, one process) reads prepared images of realistic size: synthetic
dermoscopy (``lessons_lib.synth``) at 4:3 with the shorter side of the chapter's prepared cache,
written as ``prepare`` writes them (JPEG quality 95, 0/255 PNG mask) and kept under
``<cache>/bench/``. Measured, in images per second:

* what one loader worker delivers: decoding, resizing to the input size and collating (the
  batch transforms replaced by nothing), on one thread as in a ``DataLoader`` worker process;
* the batch transforms on one CPU thread (on a GPU, fastai runs them there, in the main
  process);
* what the GPU step needs: the assumed GPU's sustained FLOP/s (``lessons_lib.cost``: an A100's
  fp16 tensor-core peak at 30 %) over the FLOPs of one training image at that size.

Workers needed = ceil(needed / one worker's rate); the row also shows the recipe's
``loader_workers``, the number the chapter trains with.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lessons_lib.atomic import cache_dir, write_json, write_with
from lessons_lib.cost import A100_40GB, DEFAULT_EFFICIENCY
from lessons_lib.models.complexity import count_flops
from lessons_lib.synth import generate

GPU, EFFICIENCY = A100_40GB, DEFAULT_EFFICIENCY


def prepared_images(short_side: int, n: int) -> list[tuple[Path, Path]]:
    """``n`` prepared-size (image, mask) pairs, 4:3, made once and cached."""
    folder = cache_dir() / "bench" / f"prepared-{short_side}-n{n}-v1"
    pairs = [(folder / f"{i}.jpg", folder / f"{i}.png") for i in range(n)]
    if not (folder / "complete.json").is_file():
        width = round(short_side * 4 / 3)
        for i, (image_path, mask_path) in enumerate(pairs):
            image, mask = generate(i, width, short_side)
            write_with(
                image_path, lambda p, a=image: Image.fromarray(a).save(p, "JPEG", quality=95)
            )
            write_with(mask_path, lambda p, a=mask: Image.fromarray(a).save(p, "PNG"))
        write_json(folder / "complete.json", {"n": n, "size": [width, short_side]})
    return pairs


def _epoch_seconds(dl) -> float:
    start = time.perf_counter()
    for _ in dl:
        pass
    return time.perf_counter() - start


def measure_loader(chapter, size: tuple[int, int], bs: int, n: int) -> tuple[float, float]:
    """One process's images/s on one thread: (decode + resize + collate, the batch transforms
    alone)."""
    import torch
    from fasttransform import Pipeline

    from lessons_lib.training import segmentation_dls

    pairs = prepared_images(chapter.prepare_size, n)
    dls = segmentation_dls(
        pairs, pairs[:bs], size, bs, aug=chapter.augmentation(),
        extra_tfms=chapter.input_transforms(), normalize=chapter.normalize, num_workers=0, seed=0,
    )  # fmt: skip
    dl = dls.train
    images = len(dl) * bs
    threads, after_batch = torch.get_num_threads(), dl.after_batch
    torch.set_num_threads(1)  # as in a DataLoader worker process
    try:
        _epoch_seconds(dl)  # warm-up: file cache, lazy initialisation
        full = _epoch_seconds(dl)
        dl.after_batch = Pipeline([])
        items = _epoch_seconds(dl)
    finally:
        dl.after_batch = after_batch
        torch.set_num_threads(threads)
    return images / items, images / max(full - items, 1e-9)


def run(n: int = 64, names: list[str] | None = None) -> list[dict]:
    """Rows per chapter and resolution: worker rate, batch transforms, GPU need, workers.

    Args:
        n: Prepared images read per epoch (at least 3 batches).
        names: Chapter ids (default: every chapter).
    """
    from chapters import chapters

    sustained = GPU.peak_flops(True) * EFFICIENCY
    gpu = f"{GPU.name.removeprefix('NVIDIA ')} fp16 at {EFFICIENCY:.0%}"
    rows = []
    for chapter in chapters(names):
        net = chapter.build()
        for size, bs in chapter.stages:
            shape = (2, chapter.in_channels, *size)  # 2: training-mode batch norm
            needed = sustained / (count_flops(net, shape, backward=True) / 2)
            worker, batch = measure_loader(chapter, size, bs, max(n, 3 * bs))
            label = f"{chapter.chapter} {size[0]}x{size[1]} batch {bs}:"
            workers = math.ceil(needed / worker)
            rows += [
                _row(f"{label} one loader worker (decode, resize, collate)", worker, "images/s"),
                _row(f"{label} batch transforms on the CPU (a GPU runs them)", batch, "images/s"),
                _row(f"{label} the GPU step needs ({gpu})", needed, "images/s"),
                _row(
                    f"{label} loader workers needed (the recipe's: {chapter.loader_workers})",
                    workers,
                    "workers",
                ),
            ]
    return rows


def _row(name: str, value: float, unit: str) -> dict:
    return {"benchmark": name, "value": float(value), "unit": unit, "target": np.nan, "ok": True}


if __name__ == "__main__":
    from chapters import names_from_command_line
    from table import print_table

    print_table(run(names=names_from_command_line(__doc__)))
