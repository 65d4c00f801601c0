"""Parameters and floating-point operations of a network, counted without running it."""

from __future__ import annotations

import copy

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
