"""VGG16 FCN of Qi et al. (paper 004): counts, shapes, weights, parameter groups.

The full network has 134 M parameters (~540 MB in fp32), so counts, FLOPs and shapes use
networks built on the ``meta`` device (no memory, no computation); only the weight and
gradient tests build real ones, and they run forward passes at 64x64 only.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16 as tv_vgg16

from lessons_lib.models import build_model
from lessons_lib.models.complexity import count_flops, count_parameters
from lessons_lib.models.vgg16_fcn import (
    VGG16FCN,
    CroppedConv2d,
    bilinear_kernel,
    reachable_window,
    upsampler,
    vgg16_fcn,
    vgg16_fcn_splitter,
)


def meta_model(**kwargs) -> VGG16FCN:
    """The network on the meta device: parameter shapes only."""
    with torch.device("meta"):
        return vgg16_fcn(**kwargs)


@pytest.fixture(scope="module")
def model() -> VGG16FCN:
    """One real, randomly initialised network shared by the tests that need values."""
    torch.manual_seed(0)
    return vgg16_fcn()


COMPARED = ("features.0.weight", "features.0.bias", "features.28.weight")
"""The tensors of the weights file the tests compare (conv1_1 and conv5_3)."""


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A random torchvision VGG16 ``state_dict`` saved as the ImageNet file would be, and
    copies of the tensors the tests compare (the whole file is 553 MB: not kept in memory)."""
    torch.manual_seed(1)
    state = tv_vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16-random.pth"
    torch.save(state, path)
    return path, {name: state[name].clone() for name in COMPARED}


def test_parameter_count_concat() -> None:
    net = meta_model()
    assert count_parameters(net) == 134_309_926
    blocks = [net.block1, net.block2, net.block3, net.block4, net.block5]
    assert sum(count_parameters(b) for b in blocks) == 14_714_688  # VGG16's 13 convolutions
    assert count_parameters(net.fc6) + count_parameters(net.fc7) == 119_545_856
    assert count_parameters(net.score) == 11_148
    assert count_parameters(net.upsample) == 38_208
    assert count_parameters(net.fuse) == 26


def test_parameter_count_sum() -> None:
    # FCN's sum fusion drops the fuse convolution (12 x 2 weights + 2 biases): 26 fewer.
    net = meta_model(fusion="sum")
    assert net.fuse is None
    assert count_parameters(net) == 134_309_900


def test_flops_at_384() -> None:
    flops = count_flops(meta_model(), (1, 3, 384, 384))
    assert flops == pytest.approx(124.68e9, rel=0.01)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_output_shape(fusion: str, size: tuple[int, int]) -> None:
    net = meta_model(fusion=fusion)
    x = torch.empty(2, 3, *size, device="meta")
    assert net(x).shape == (2, 2, *size)


def test_output_shape_other_channels() -> None:
    net = meta_model(n_out=3, in_channels=1)
    assert net(torch.empty(1, 1, 64, 64, device="meta")).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("size", [(48, 64), (64, 80), (65, 64)])
def test_size_not_multiple_of_32(size: tuple[int, int]) -> None:
    net = meta_model()
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.empty(1, 3, *size, device="meta"))


def test_unknown_kwarg() -> None:
    with pytest.raises(TypeError, match=r"vgg16_fcn: unknown argument\(s\) foo; valid: n_out"):
        build_model("vgg16_fcn", foo=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_out": 0}, "n_out must be a positive integer, got 0"),
        ({"n_out": 2.0}, "n_out must be a positive integer, got 2.0"),
        ({"in_channels": 0}, "in_channels must be a positive integer, got 0"),
        ({"fusion": "max"}, "fusion must be one of .*, got 'max'"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be a probability in \[0, 1\), got -0.1"),
        ({"deconv_init": "zeros"}, "deconv_init must be one of .*, got 'zeros'"),
        ({"pretrained": None}, "pretrained must be True, False or a path, got None"),
    ],
)
def test_bad_values(kwargs: dict, match: str) -> None:
    """Each bad value is refused by the builder's own check, naming the argument (torch's
    ``nn.Dropout`` would refuse -0.1 too, but later and without saying which argument)."""
    with pytest.raises(ValueError, match=match):
        vgg16_fcn(**kwargs)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        vgg16_fcn(pretrained=tmp_path / "absent.pth")


def test_pretrained_from_path(weights_file: tuple[Path, dict]) -> None:
    path, state = weights_file
    net = vgg16_fcn(pretrained=path)
    assert str(path) in net.weights_source
    # torchvision's features.0 / features.28 are conv1_1 / conv5_3.
    assert torch.equal(net.block1.conv1_1.weight, state["features.0.weight"])
    assert torch.equal(net.block1.conv1_1.bias, state["features.0.bias"])
    assert torch.equal(net.block5.conv5_3.weight, state["features.28.weight"])


def test_pretrained_with_four_channels(weights_file: tuple[Path, dict]) -> None:
    path, state = weights_file
    net = vgg16_fcn(pretrained=str(path), in_channels=4)
    w = net.block1.conv1_1.weight
    assert w.shape == (64, 4, 3, 3)
    assert torch.equal(w[:, :3], state["features.0.weight"])  # RGB filters kept
    assert torch.count_nonzero(w[:, 3]) == 0  # the extra channel starts at zero
    assert "4 input channels" in net.weights_source


def test_random_weights_source(model: VGG16FCN) -> None:
    assert model.weights_source.startswith("random initialisation")
    assert model.splitter is vgg16_fcn_splitter


def test_splitter_covers_every_parameter_once(model: VGG16FCN) -> None:
    groups = model.splitter(model)
    assert len(groups) == 2
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    backbone, head = groups
    assert sum(p.numel() for p in backbone) == 14_714_688  # the pretrained part
    assert any(p is model.fc6.conv.weight for p in head)


def test_gradients_reach_conv1_1(model: VGG16FCN) -> None:
    model.train()
    model.zero_grad()
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 2, (2, 64, 64))
    logits = model(x)
    assert logits.shape == (2, 2, 64, 64)
    F.cross_entropy(logits, y).backward()
    grad = model.block1.conv1_1.weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    model.zero_grad()


@pytest.mark.parametrize("factor", [2, 4, 8, 16, 32])
def test_bilinear_kernel_is_bilinear_interpolation(factor: int) -> None:
    up = upsampler(2, factor)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(2, factor))
    x = torch.randn(1, 2, 5, 6)
    out = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == ref.shape == (1, 2, 5 * factor, 6 * factor)
    # Equal away from the border (the transposed convolution pads with zeros there).
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(out[inner], ref[inner])


def test_deconv_init_bilinear() -> None:
    net = vgg16_fcn(deconv_init="bilinear")
    for name, factor in {"pool1": 2, "pool5": 32, "fc7": 32}.items():
        assert torch.equal(net.upsample[name].weight, bilinear_kernel(2, factor))


# fc6 (7x7, padding 3) on pool5 convolves only the taps that can reach pool5 (issue #19).


def assert_close_to_scale(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal up to float rounding: ``|out - ref| <= tol * max |ref|``."""
    assert out.shape == ref.shape
    scale = ref.abs().max().item()
    torch.testing.assert_close(out, ref, rtol=0, atol=tol * max(scale, 1e-12))


@pytest.mark.parametrize(
    ("size", "window"),
    [
        (1, (3, 4, 0, 0)),
        (2, (2, 5, 1, 1)),
        (3, (1, 6, 2, 2)),
        (4, (0, 7, 3, 3)),
        (12, (0, 7, 3, 3)),
    ],
)
def test_reachable_window_fc6(size: int, window: tuple[int, int, int, int]) -> None:
    # pool5 at 32, 64, 96, 128, 384 px: the central 1, 3, 5, 7, 7 taps of fc6's 7x7 kernel.
    assert reachable_window(size, 7, 3) == window


def test_fc6_is_cropped_conv(model: VGG16FCN) -> None:
    conv = model.fc6.conv
    assert isinstance(conv, CroppedConv2d) and isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (4096, 512, 7, 7)  # the parameter is still the full kernel
    assert (conv.padding, conv.stride) == ((3, 3), (1, 1))
    assert type(model.fc7.conv) is nn.Conv2d  # 1x1: nothing to crop


@pytest.mark.parametrize("kernel", [(7, 7), (3, 5), (2, 4), (1, 1)])
@pytest.mark.parametrize("pool5", [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 12), (7, 7)])
def test_cropped_conv_equals_full_conv(kernel: tuple[int, int], pool5: tuple[int, int]) -> None:
    # Small channels, float64: odd and even kernels (uneven trimmed padding), any pool5 size.
    torch.manual_seed(0)
    padding = (kernel[0] // 2, kernel[1] // 2)
    conv = CroppedConv2d(6, 5, kernel, padding=padding).double()
    x = torch.randn(2, 6, *pool5, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_()
    out, ref = conv(x), F.conv2d(x, weight, conv.bias, padding=padding)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(ref)
    (g_w, g_x) = torch.autograd.grad(out, (conv.weight, x), grad_out)
    (r_w, r_x) = torch.autograd.grad(ref, (weight, x), grad_out)
    torch.testing.assert_close(g_w, r_w)
    torch.testing.assert_close(g_x, r_x)


@pytest.mark.parametrize("size", [32, 64, 96, 224, 384])
def test_fc6_equals_full_kernel(model: VGG16FCN, size: int) -> None:
    """fc6 on a pool5-sized tensor: the output and the weight and bias gradients are the full
    7x7 convolution's; the taps that cannot reach pool5 get exactly zero gradient. fc6 as the
    network builds it (512 input channels, its kernel and padding), with 256 of its 4096
    outputs: which taps are convolved does not depend on the outputs, and the full layer's
    two 411 MB weight gradients would dominate the suite's memory."""
    fc6, side = model.fc6.conv, size // 32
    torch.manual_seed(size)
    conv = type(fc6)(fc6.in_channels, 256, fc6.kernel_size, padding=fc6.padding)
    x = torch.randn(1, 512, side, side)
    out = conv(x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=3)  # the full kernel, the same parameter
    assert out.shape == ref.shape == (1, 256, side, side)
    assert_close_to_scale(out, ref)
    grad_out = torch.randn_like(ref)
    g_w, g_b = torch.autograd.grad(out, (conv.weight, conv.bias), grad_out)
    r_w, r_b = torch.autograd.grad(ref, (conv.weight, conv.bias), grad_out)
    assert_close_to_scale(g_b, r_b)
    start, stop, _, _ = reachable_window(side, 7, 3)
    live = (..., slice(start, stop), slice(start, stop))
    assert_close_to_scale(g_w[live], r_w[live])
    dead = torch.ones(7, 7, dtype=torch.bool)
    dead[start:stop, start:stop] = False
    assert g_w.abs().sum(dim=(0, 1))[dead].sum() == 0
    assert r_w.abs().sum(dim=(0, 1))[dead].sum() == 0  # as the full convolution gives


def test_network_at_64_equals_full_kernel(model: VGG16FCN, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole network at 64x64 (pool5 2x2, the smoke size): the same logits and gradients
    as with fc6 convolving its full 7x7 kernel. Prints the forward + backward times (the
    faster of two runs each; not asserted: the machine may be busy)."""
    torch.manual_seed(64)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 2, (2, 64, 64))
    was_training = model.training
    model.eval()  # no dropout: both passes see the same network
    params = {"fc6": model.fc6.conv, "fc7": model.fc7.conv, "conv1_1": model.block1.conv1_1}
    start, stop, _, _ = reachable_window(2, 7, 3)
    live = slice(start, stop)

    def step() -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        seconds = time.perf_counter() - start
        grads = {name: m.weight.grad for name, m in params.items()}
        # fc6's live taps only (pool5 is 2x2: its central 3x3): a copy of 75 MB, not 411 MB
        grads["fc6"] = grads["fc6"][..., live, live].clone()
        return logits.detach(), grads, seconds

    try:
        out, grads, cropped = step()
        with monkeypatch.context() as patch:
            patch.setattr(CroppedConv2d, "forward", nn.Conv2d.forward)  # the full kernel
            ref, ref_grads, full = step()
            full = min(full, step()[2])
        cropped = min(cropped, step()[2])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    assert_close_to_scale(out, ref)
    for name, grad in grads.items():
        assert_close_to_scale(grad, ref_grads[name], tol=1e-4)  # through 16 layers
    print(f"\nVGG16FCN 2x3x64x64 forward+backward: cropped fc6 {cropped:.2f} s, full {full:.2f} s")
