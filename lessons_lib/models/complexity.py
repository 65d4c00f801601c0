"""Parameters, floating-point operations and the activations kept for the backward pass of a
network, counted without running it, its layer-by-layer output shapes (:func:`layer_shapes`)
and its measured inference speed (:func:`measure_throughput`).

What these numbers cost on a GPU (hours, memory) is :mod:`lessons_lib.cost`.
"""

from __future__ import annotations

import copy
import itertools
import time

import pandas as pd
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


def saved_activation_bytes(
    model: nn.Module,
    shape: tuple[int, ...],
    mixed_precision: bool = False,
    device: str | torch.device = "meta",
) -> int:
    """Bytes of the tensors autograd keeps from a training forward pass for the backward pass.

    A copy of ``model`` runs one forward pass in training mode under
    :class:`torch.autograd.graph.saved_tensors_hooks`, whose pack hook receives every tensor an
    operation saves for its backward: a convolution its input, a ReLU its output, a batch norm
    its input and batch statistics, a max-pooling its input and indices, a dropout its mask.
    A tensor is counted once (by its storage) however many operations save it or a view of it,
    e.g. a ReLU's output that the next convolution saves as its input. The model's parameters
    and buffers are left out: they are weights, not activations. The input batch counts (the
    first convolution keeps it); the loss's own saved tensors are not included.

    On the ``meta`` device (the default) nothing is computed or allocated, only shapes
    propagate: a paper's input size and batch cost nothing on a CPU. ``device="cpu"`` runs the
    pass for real (both give the same count).

    Args:
        model: The network (not modified: a copy runs).
        shape: Input batch shape, e.g. ``(16, 3, 384, 384)``. Training-mode batch norm after a
            global pooling needs at least 2 images.
        mixed_precision: Count floating-point tensors at 2 bytes per element, as autocast's
            fp16 copies are kept on a GPU; integer and boolean tensors (pooling indices,
            dropout masks) keep their own size.
        device: Where the pass runs: ``"meta"`` or ``"cpu"``.

    Returns:
        Bytes of the distinct saved storages.
    """
    device = torch.device(device)
    net = copy.deepcopy(model)
    on_meta = any(t.is_meta for t in itertools.chain(net.parameters(), net.buffers()))
    net = (net.to_empty(device=device) if on_meta else net.to(device)).train()
    # storages are kept referenced, so that their ids stay unique while counting
    weights = {
        id(s): s
        for s in (t.untyped_storage() for t in itertools.chain(net.parameters(), net.buffers()))
    }
    kept: dict[int, tuple[torch.UntypedStorage, int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key not in weights and key not in kept:
            size = storage.nbytes()
            if mixed_precision and tensor.is_floating_point() and tensor.element_size() > 2:
                size = size * 2 // tensor.element_size()
            kept[key] = (storage, size)
        return tensor

    if device.type == "meta":
        x = torch.empty(shape, device=device)
    else:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = net(x)
    total = sum(size for _, size in kept.values())
    del out
    return int(total)


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


def layer_shapes(model: nn.Module, shape: tuple[int, ...], depth: int = 1) -> pd.DataFrame:
    """Each layer's output shape for one input, as d2l prints a network: computed on PyTorch's
    ``meta`` device (shapes only, nothing is computed or allocated).

    Args:
        model: The network.
        shape: The input's shape, e.g. ``(1, 3, 448, 448)``.
        depth: How deep to list modules: 1 lists the model's children, 2 their children too.

    Returns:
        One row per module up to ``depth`` levels (in the order they run): its name, class,
        output shape and parameters (its own and its children's).
    """
    meta = copy.deepcopy(model).to_empty(device="meta").eval()
    rows: list[dict] = []
    hooks = []

    def named(prefix: str, module: nn.Module, level: int) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            hooks.append(child.register_forward_hook(_recorder(rows, full, child)))
            if level < depth:
                named(full, child, level + 1)

    named("", meta, 1)
    try:
        with torch.no_grad():
            out = meta(torch.empty(shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    rows.append({"layer": "output", "class": "", "output shape": _shape(out), "parameters": 0})
    return pd.DataFrame(rows).set_index("layer")


def _shape(out: object) -> str:
    if isinstance(out, torch.Tensor):
        return " x ".join(str(d) for d in out.shape)
    if isinstance(out, (tuple, list)):
        return ", ".join(_shape(o) for o in out)
    return type(out).__name__


def _recorder(rows: list[dict], name: str, module: nn.Module):
    def hook(_module: nn.Module, _inputs: object, out: object) -> None:
        rows.append(
            {
                "layer": name,
                "class": type(module).__name__,
                "output shape": _shape(out),
                "parameters": sum(p.numel() for p in module.parameters()),
            }
        )

    return hook
