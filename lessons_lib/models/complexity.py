"""Parameters and floating-point operations of a network, counted without running it, and its
measured inference speed (:func:`measure_throughput`)."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def count_flops(model: nn.Module, shape: tuple[int, ...], backward: bool = False) -> int:
    """Floating-point operations of one forward (and backward) pass; a multiply-add counts 2.

    Counted with ``torch.utils.flop_counter`` on a copy of ``model`` on the ``meta`` device, so
    nothing is computed or allocated: instant even at a paper's input size on a CPU.

    Args:
        model: The network (not modified).
        shape: Input shape, e.g. ``(1, 3, 384, 384)``.
        backward: Count the backward pass too (what one training step costs).

    Returns:
        FLOPs of the batch (convolutions, transposed convolutions and matrix products;
        element-wise work is not counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    meta.train(backward)
    x = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        if backward:
            meta(x).sum().backward()
        else:
            with torch.no_grad():
                meta(x)
    return int(counter.get_total_flops())


def measure_throughput(
    model: nn.Module,
    shape: tuple[int, ...],
    batch_size: int,
    iters: int,
    warmup: int,
    device: str | torch.device | None = None,
) -> dict[str, float | int | str]:
    """Inference speed of ``model``: images per second on random input, warm-up excluded.

    The speed the SLSDeep paper (Sarker et al., MICCAI 2018, arXiv:1805.10241, abstract) states
    as "about 100 images of a 384x384 size per second on a recent GPU" is measured this way:
    ``warmup`` forward passes (not timed: cuDNN autotuning, memory allocation, lazy
    initialisation), then ``iters`` timed forward passes in evaluation mode without gradients.
    On a GPU the clock is read only after ``torch.cuda.synchronize()``, since kernels run
    asynchronously. The model's device and training mode are restored afterwards.

    Args:
        model: The network.
        shape: One input's shape without the batch dimension, e.g. ``(3, 384, 384)``.
        batch_size: Images per forward pass.
        iters: Timed forward passes, >= 1.
        warmup: Untimed forward passes before them, >= 0.
        device: Where to run; default the GPU if there is one, else the CPU.

    Returns:
        ``images_per_s``, ``seconds_per_batch`` (mean of the timed passes), ``batch_size``,
        ``iters``, ``warmup`` and ``device`` (its name, e.g. ``"cpu"`` or ``"cuda:0"``).

    Raises:
        ValueError: ``batch_size`` or ``iters`` < 1, or ``warmup`` < 0.
    """
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise ValueError(
            f"measure_throughput needs batch_size >= 1, iters >= 1 and warmup >= 0, got "
            f"batch_size={batch_size}, iters={iters}, warmup={warmup}"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    first = next(iter(model.parameters()), None)
    home = first.device if first is not None else torch.device("cpu")
    was_training = model.training

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x = torch.randn(batch_size, *shape, device=device)
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            start = time.perf_counter()
            for _ in range(iters):
                model(x)
            sync()
            seconds = (time.perf_counter() - start) / iters
    finally:
        model.to(home).train(was_training)
    return {
        "images_per_s": batch_size / seconds,
        "seconds_per_batch": seconds,
        "batch_size": batch_size,
        "iters": iters,
        "warmup": warmup,
        "device": str(device),
    }
