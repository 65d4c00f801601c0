"""lessons_lib.models.complexity: parameters and FLOPs, checked against hand counts."""

from __future__ import annotations

import torch
from torch import nn

from lessons_lib.models.complexity import count_flops, count_parameters


def test_flops_of_a_convolution_by_hand() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    forward = 2 * 2 * 3 * 9 * 64  # multiply-adds x 2 over an 8x8 output
    assert count_flops(conv, (1, 2, 8, 8)) == forward
    # backward: the weight gradient only (the input needs none), as much again
    assert count_flops(conv, (1, 2, 8, 8), backward=True) == 2 * forward
    assert conv.weight.device.type == "cpu"  # the model itself is not moved


def test_flops_of_a_small_network_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    conv = 2 * 3 * 4 * 16
    linear = 2 * 64 * 5
    assert count_flops(net, (2, 3, 4, 4)) == 2 * (conv + linear)


def test_count_parameters_trainable_only() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert count_parameters(net) == 3 * 2 + 2 + 2 + 2
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 2 + 2 + 2
    assert count_parameters(net, trainable=False) == 3 * 2 + 2 + 2 + 2
    assert torch.is_grad_enabled()
