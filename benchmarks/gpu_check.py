"""Ready for the GPU: every chapter's full-profile training step, measured, beside its estimate.

``python benchmarks/gpu_check.py`` (``make gpu-check``) on a CUDA machine: for each chapter, the
network of its recipe's ``full`` profile at the largest input and batch size it trains with
(``chapters.py``), the recipe's loss and optimiser, trained through the chapters' one training
path (:func:`lessons_lib.training.make_learner`: fastai's Learner, mixed precision on a GPU as
the chapters train) on generated batches (no dataset is needed on the machine): a few warm-up
steps, then timed steps, then one validation batch. Per chapter it records

* training images/s and the seconds an epoch of the paper's training set takes at that rate,
  beside the cost estimate's (:mod:`lessons_lib.cost`, the recipe's own estimate for this
  GPU's datasheet figures, :func:`lessons_lib.cost.gpu_named`) and the ratio; the share of
  the GPU's peak the step achieved (what calibrating the estimate's 30 % would use);
* the peak GPU memory (``torch.cuda.max_memory_allocated``) beside the estimate's;
* whether every training loss stayed finite, and the largest difference between the lesion
  probabilities of an fp16 (autocast) and an fp32 forward pass of the same batch;
* validation images/s, and the loader workers the measured step needs: one worker's images/s
  through the chapter's own input pipeline (``bench_pipeline.measure_loader``, on this
  machine's CPU) against the step's;
* the time to copy one batch to the GPU from pageable and from pinned host memory (the loaders
  do not pin today: this says whether ``pin_memory`` would matter beside the step).

The seed and cuDNN flags are the chapters' (``set_seed(0, reproducible=True)``: deterministic
cuDNN, no autotuning), so the step is timed as a chapter trains.

It prints one table and writes one JSON file (``--out``). Without CUDA it stops with a message,
unless given ``--device cpu --tiny``: the same code at tiny sizes (64x64 inputs, batch 2, one
timed step) in seconds, as ``make test`` runs it. Nothing here is a target: the numbers are
measurements (see ``benchmarks/README`` rules: speed lives in benchmarks, not in tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chapters import Chapter, chapters  # noqa: E402

from lessons_lib.atomic import write_json  # noqa: E402
from lessons_lib.cost import A100_40GB, GIB, GPU, gpu_named  # noqa: E402

TINY_SIZE, TINY_BATCH = 64, 2
"""``--tiny``: every chapter at 64x64 (the smallest input all five networks take), batch 2."""

NO_CUDA = (
    "no CUDA GPU is visible here: this check measures the GPU path. On a CUDA machine run "
    "`make gpu-check`; to test the check's own code on a CPU, run "
    "`python benchmarks/gpu_check.py --device cpu --tiny`"
)


class StepTimer(Callback):
    """Times every batch, the device synchronised around it, and keeps each training loss."""

    order = 100  # after the mixed-precision and gradient callbacks: the whole step is timed

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.train: list[float] = []
        self.valid: list[float] = []
        self.losses: list[float] = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def before_batch(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def after_batch(self) -> None:
        self._sync()
        seconds = time.perf_counter() - self.start
        if self.training:
            self.train.append(seconds)
            self.losses.append(float(self.learn.loss.detach()))
        else:
            self.valid.append(seconds)


def synthetic_loaders(
    n_batches: int, batch_size: int, size: tuple[int, int], channels: int, device: torch.device
):
    """fastai DataLoaders of generated batches: ``n_batches`` for training, one for validation.

    Images are standard normal noise (the step's cost does not depend on the pixels); masks are
    a disc per image (a lesion and skin in every batch, so every loss and metric has both)."""
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.torch_core import TensorImage, TensorMask

    gen = torch.Generator().manual_seed(0)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disc = (((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1).long()

    def items(n: int) -> list[tuple]:
        return [
            (TensorImage(torch.randn(channels, h, w, generator=gen)), TensorMask(disc.clone()))
            for _ in range(n)
        ]

    train = DataLoader(items(n_batches * batch_size), bs=batch_size, shuffle=False, device=device)
    valid = DataLoader(items(batch_size), bs=batch_size, shuffle=False, device=device)
    return DataLoaders(train, valid, device=device)


def fp16_difference(model: torch.nn.Module, xb: torch.Tensor, activation: str) -> float:
    """Largest difference of the lesion probability between an fp32 forward pass and an
    autocast one (fp16 on a GPU, bfloat16 on a CPU, where autocast has no fp16) of ``xb``."""
    from lessons_lib.losses.base import activate, foreground

    model.eval()
    dtype = torch.float16 if xb.device.type == "cuda" else torch.bfloat16
    with torch.no_grad():
        full = foreground(activate(model(xb.float()).float(), activation))
        with torch.autocast(device_type=xb.device.type, dtype=dtype):
            half = foreground(activate(model(xb).float(), activation))
    return float((full - half.float()).abs().max())


def copy_seconds(shape: tuple[int, ...], device: torch.device, pinned: bool, n: int = 5) -> float:
    """Seconds to copy one float32 batch of ``shape`` from host to ``device`` (median of ``n``),
    from pageable or pinned memory: what the loaders' ``pin_memory`` would change."""
    host = torch.randn(shape)
    if pinned:
        host = host.pin_memory()
    times = []
    for _ in range(n + 1):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        host.to(device, non_blocking=pinned)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def machine_gpu(device: torch.device) -> tuple[GPU, str]:
    """The GPU the estimate is computed for, and where its figures come from."""
    if device.type != "cuda":
        return A100_40GB, "CPU run: the estimate is the A100's, as the chapters print it"
    name = torch.cuda.get_device_name(device)
    memory = torch.cuda.get_device_properties(device).total_memory / GIB
    known = gpu_named(name, memory)
    if known is None:
        fallback = GPU(name, memory, A100_40GB.fp32_tflops, A100_40GB.fp16_tflops)
        return fallback, f"{name}: no datasheet figures known, the A100's throughput assumed"
    return known, f"{name}: datasheet figures of {known.fp16_tflops:g} fp16 TFLOP/s"


def largest_stage(chapter: Chapter) -> tuple[tuple[int, int], int]:
    """The training stage with the largest input (the first of equals) and its batch size."""
    return max(chapter.stages, key=lambda stage: stage[0][0] * stage[0][1])


def check_chapter(
    chapter: Chapter,
    device: torch.device,
    gpu: GPU,
    tiny: bool,
    warmup: int,
    steps: int,
    loader_images: int,
) -> dict[str, Any]:
    """One chapter's measured step, beside its estimate (one row of the table)."""
    from bench_pipeline import measure_loader
    from fastai.torch_core import set_seed

    from lessons_lib.training import make_learner

    R, P = chapter.recipe, chapter.params  # noqa: N806 -- the chapters' names
    size, batch_size = largest_stage(chapter)
    estimate = R.estimate_cost(P, gpu=gpu)
    stage = next(
        s
        for s in estimate.stages
        if s.batch_size == batch_size and tuple(s.size) == size and s.images_trained
    )
    if tiny:
        size, batch_size = (TINY_SIZE, TINY_SIZE), TINY_BATCH
    if device.type == "cuda":
        gc.collect()  # the previous chapter's learner (callbacks hold references to it)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    set_seed(0, reproducible=True)  # as every chapter: cuDNN deterministic, no autotuning
    model = chapter.build(device="cpu").to(device)
    loss = R.loss(P)
    dls = synthetic_loaders(warmup + steps, batch_size, size, chapter.in_channels, device)
    timer = StepTimer(device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as out:
        # mixed precision as on a GPU; on a CPU fastai's callback runs but disables itself
        learn = make_learner(dls, model, loss, out, optimizer=R.optimizer(P), mixed_precision=True)
        learn.add_cb(timer)
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, lr=1e-4)  # a small constant rate: the step's cost, not its learning
        xb = dls.valid.one_batch()[0].as_subclass(torch.Tensor)
        difference = fp16_difference(learn.model, xb, loss.output_activation)
    step = statistics.median(timer.train[warmup:])
    images_per_s = batch_size / step
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    predicted_rate = estimate.sustained_flops / stage.flops_train
    predicted_memory = estimate.memory_bytes(stage) / GIB
    epoch_images = stage.images_per_epoch // stage.batch_size * stage.batch_size
    loader_chapter = dataclasses.replace(chapter, prepare_size=min(size)) if tiny else chapter
    worker_rate, _ = measure_loader(loader_chapter, size, batch_size, loader_images)
    shape = (batch_size, chapter.in_channels, *size)
    copies = (
        {p: copy_seconds(shape, device, p) for p in (False, True)}
        if device.type == "cuda"
        else {False: None, True: None}
    )
    del learn, model
    return {
        "chapter": chapter.chapter,
        "input": f"{size[0]}x{size[1]}",
        "batch": batch_size,
        "images/s": images_per_s,
        "estimated images/s": predicted_rate,
        "speed ratio": images_per_s / predicted_rate,
        "s/epoch": epoch_images / images_per_s,
        "estimated s/epoch": epoch_images / predicted_rate,
        "share of peak": images_per_s * stage.flops_train / gpu.peak_flops(True),
        "peak memory GiB": peak,
        "estimated memory GiB": predicted_memory,
        "memory ratio": None if peak is None else peak / predicted_memory,
        "validation images/s": batch_size / statistics.median(timer.valid),
        "loss finite": bool(np.isfinite(timer.losses).all()),
        "fp16 - fp32 max": difference,
        "loader images/s per worker": worker_rate,
        "loader workers needed": math.ceil(images_per_s / worker_rate),
        "recipe loader workers": chapter.loader_workers,
        "batch copy ms (pageable)": None if copies[False] is None else 1000 * copies[False],
        "batch copy ms (pinned)": None if copies[True] is None else 1000 * copies[True],
        "steps timed": len(timer.train) - warmup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="64x64 inputs, batch 2: seconds")
    parser.add_argument("--chapters", nargs="*", help="chapter ids, e.g. 002 004 (all)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (3; tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (10; tiny 1)")
    parser.add_argument("--out", default="runs/gpu-check.json", help="the JSON file written")
    args = parser.parse_args(argv)
    warnings.filterwarnings(  # fastai's mixed precision on a CPU: known, and it says so once
        "ignore", message=r".*(CUDA is not available|GradScaler is enabled)", category=UserWarning
    )
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: {NO_CUDA}", file=sys.stderr)
        return 2
    if device.type != "cuda" and not args.tiny:
        print(f"error: --device {args.device} needs --tiny ({NO_CUDA})", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    steps = args.steps if args.steps is not None else (1 if args.tiny else 10)
    from lessons_lib.recipes import CHAPTERS

    names = [c for c in CHAPTERS if not args.chapters or c[:3] in args.chapters]
    gpu, source = machine_gpu(device)
    started = time.time()
    rows = []
    for chapter in chapters(names):
        print(f"{chapter.chapter} ...", flush=True)
        loader_images = 3 * TINY_BATCH if args.tiny else 48
        rows.append(check_chapter(chapter, device, gpu, args.tiny, warmup, steps, loader_images))
    table = pd.DataFrame(rows).set_index("chapter")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.round(3).T.to_string())
    print(f"estimates for {source}; {time.time() - started:.0f} s in all")
    write_json(
        Path(args.out),
        {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "estimate_gpu": dataclasses.asdict(gpu),
            "estimate_source": source,
            "tiny": args.tiny,
            "warmup_steps": warmup,
            "timed_steps": steps,
            "torch": torch.__version__,
            "cudnn": {
                "deterministic": torch.backends.cudnn.deterministic,
                "benchmark": torch.backends.cudnn.benchmark,
            },
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.time() - started, 1),
            "chapters": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0 if all(r["loss finite"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
