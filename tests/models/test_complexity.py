"""lessons_lib.models.complexity: parameters, FLOPs and saved activations, checked against hand
counts."""

from __future__ import annotations

import torch
from torch import nn

from lessons_lib.models.complexity import count_flops, count_parameters, saved_activation_bytes


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


def hand_net() -> nn.Sequential:
    """conv 1->2 (3x3, no bias), ReLU, conv 2->1 (1x1, bias): 18 + 2 + 1 = 21 parameters."""
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1))


def test_saved_activations_of_a_small_network_by_hand() -> None:
    """What autograd keeps for backward, on a 1x1x8x8 input (fp32, 4 bytes per value):

    * conv1 saves its input x (1*8*8 = 64 values = 256 B) and its weight (a parameter: not an
      activation, not counted);
    * the ReLU saves its output (2*8*8 = 128 values = 512 B);
    * conv2 saves its input, the ReLU's output again (the same storage: counted once), and its
      weight (not counted). Its output is saved by nothing.
    """
    net = hand_net()
    one = 256 + 512
    assert saved_activation_bytes(net, (1, 1, 8, 8)) == one
    assert saved_activation_bytes(net, (1, 1, 8, 8), device="cpu") == one  # a real pass agrees
    assert saved_activation_bytes(net, (4, 1, 8, 8)) == 4 * one  # linear in the batch
    assert saved_activation_bytes(net, (4, 1, 8, 8), mixed_precision=True) == 4 * one // 2
    assert next(net.parameters()).device.type == "cpu" and net.training


def test_saved_activations_keep_integer_tensors_whole_under_mixed_precision() -> None:
    # max-pooling saves its input (fp32: halved under autocast) and its int64 indices (not)
    pool = nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(2))
    # conv saves x (64 values); max-pooling saves the conv output (64) and 16 int64 indices
    assert saved_activation_bytes(pool, (1, 1, 8, 8)) == 64 * 4 + 64 * 4 + 16 * 8
    assert saved_activation_bytes(pool, (1, 1, 8, 8), mixed_precision=True) == 128 * 2 + 16 * 8


def test_saved_activations_of_a_resnet_block_match_the_memory_a_real_pass_allocates() -> None:
    """On the CPU, the memory the forward pass allocates and still holds afterwards (PyTorch's
    profiler) is what autograd keeps, minus the input, which was allocated before."""
    from torch.profiler import ProfilerActivity, profile
    from torchvision.models.resnet import BasicBlock

    block = BasicBlock(16, 16).train()
    x = torch.randn(2, 16, 32, 32)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = block(x)
    held = sum(event.self_cpu_memory_usage for event in prof.events())
    saved = saved_activation_bytes(block, tuple(x.shape), device="cpu")
    assert out.grad_fn is not None
    assert saved - x.numel() * 4 == held
    # by hand: x, conv1's output, ReLU's output (= conv2's input), conv2's output and the
    # block's output (the in-place ReLU's), plus each batch norm's mean and 1/std (16 values)
    assert saved == 5 * x.numel() * 4 + 2 * 2 * 16 * 4
    assert saved_activation_bytes(block, tuple(x.shape)) == saved  # meta: the same count
