"""lessons_lib.models.lesionseg: LesionSeg (Ramachandram & DeVries 2017), both Table 1 readings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lessons_lib.models import build_model
from lessons_lib.models.complexity import count_flops, count_parameters
from lessons_lib.models.lesionseg import LesionSeg, lesionseg, nin_parameters, receptive_field


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({}, 2_054_880),
        ({"reading": "B"}, 2_165_568),
        ({"upsample": "bilinear"}, 2_020_290),
        ({"reading": "B", "upsample": "bilinear"}, 2_020_290),
    ],
)
def test_parameter_counts(kwargs: dict, params: int) -> None:
    assert count_parameters(lesionseg(**kwargs)) == params


def test_per_layer_parameters_match_the_notes() -> None:
    model = lesionseg()
    names = [f"conv{s}_{i}" for s in (1, 2, 3) for i in (1, 2, 3)] + ["subpixel"]
    per_layer = [count_parameters(getattr(model, n)) for n in names]
    assert per_layer == [4928, 55488, 9408, 110848, 295424, 66048, 590336, 590336, 295168, 36896]


@pytest.mark.parametrize(("reading", "gflops"), [("A", 56.69), ("B", 28.95)])
def test_flops_at_448(reading: str, gflops: float) -> None:
    flops = count_flops(lesionseg(reading=reading), (1, 3, 448, 448))
    assert flops == pytest.approx(gflops * 1e9, rel=0.01)


@pytest.mark.parametrize(("reading", "rf", "stride"), [("A", 77, 4), ("B", 109, 8)])
def test_receptive_field_and_output_stride(reading: str, rf: int, stride: int) -> None:
    model = lesionseg(reading=reading)
    assert receptive_field(model) == rf
    assert model.output_stride == stride


@pytest.mark.parametrize("reading", ["A", "B"])
@pytest.mark.parametrize("upsample", ["subpixel", "bilinear"])
def test_output_is_logits_at_input_size(reading: str, upsample: str) -> None:
    torch.manual_seed(0)
    model = lesionseg(reading=reading, upsample=upsample, n_out=3, in_channels=4).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 4, 24, 40))
    assert y.shape == (2, 3, 24, 40)
    # Raw logits: not a softmax over the classes.
    assert not torch.allclose(y.sum(1), torch.ones(2, 24, 40), atol=1e-3)


def test_subpixel_head_follows_table_1() -> None:
    a, b = lesionseg(), lesionseg(reading="B")
    assert a.subpixel.conv.out_channels == 32  # the table's 3x3x32 = 2 classes x 4^2
    assert a.subpixel.shuffle.upscale_factor == 4
    assert a.subpixel.conv.bias is not None and not hasattr(a.subpixel, "bn")
    assert b.subpixel.conv.out_channels == 128 and b.subpixel.shuffle.upscale_factor == 8
    assert b.conv3_1.conv.stride == (2, 2) and b.conv3_1.conv.dilation == (1, 1)
    for name in ("conv3_1", "conv3_2", "conv3_3"):
        assert getattr(a, name).conv.dilation == (2, 2)
        assert getattr(a, name).conv.stride == (1, 1)


def test_bilinear_ablation_head() -> None:
    model = lesionseg(upsample="bilinear")
    assert not hasattr(model, "subpixel")
    assert model.bilinear.conv.out_channels == 2
    assert isinstance(model.bilinear.resize, nn.Upsample)
    assert model.bilinear.resize.mode == "bilinear"
    assert model.bilinear.resize.align_corners is False
    # Same features; only the head's conv shrinks from 32 to 2 output maps.
    saved = (128 * 9 * 32 + 32) - (128 * 9 * 2 + 2)
    assert count_parameters(lesionseg()) - count_parameters(model) == saved == 34_590


def test_bilinear_ablation_equals_conv_then_interpolate() -> None:
    torch.manual_seed(0)
    model = lesionseg(upsample="bilinear").eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        y = model(x)
        feats = x
        for s in (1, 2, 3):
            for i in (1, 2, 3):
                feats = getattr(model, f"conv{s}_{i}")(feats)
        logits = model.bilinear.conv(model.bilinear.pad(feats))
        ref = nn.functional.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(y, ref, atol=1e-5)


def test_nin_layers_add_parameters() -> None:
    model = lesionseg()
    assert nin_parameters(model, include_bn=False) == 96 * 96 + 256 * 256 == 74_752
    assert nin_parameters(model) == 74_752 + 2 * (96 + 256) == 75_456
    for name in ("conv1_3", "conv2_3"):
        assert getattr(model, name).conv.kernel_size == (1, 1)
    # Deleting them leaves a working net with exactly that many fewer parameters.
    model.conv1_3 = nn.Identity()
    model.conv2_3 = nn.Identity()
    assert count_parameters(model) == 2_054_880 - 75_456
    assert model.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 2, 16, 16)


def test_mirror_padding_is_reflection_and_convs_are_unpadded() -> None:
    model = lesionseg()
    assert any(isinstance(m, nn.ReflectionPad2d) for m in model.modules())
    assert not any(isinstance(m, nn.ZeroPad2d) for m in model.modules())
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.padding == (0, 0)
            assert m.padding_mode == "zeros"  # irrelevant since padding is 0; pad is explicit
    assert model.conv1_1.pad.padding == (2, 2, 2, 2)
    assert model.conv3_1.pad.padding == (2, 2, 2, 2)  # rate 2
    assert not hasattr(model.conv1_3, "pad") and not hasattr(model.conv2_3, "pad")


def test_bn_everywhere_but_relu_not_after_conv3_3() -> None:
    model = lesionseg()
    for s in (1, 2, 3):
        for i in (1, 2, 3):
            block = getattr(model, f"conv{s}_{i}")
            assert isinstance(block.bn, nn.BatchNorm2d)
            assert block.conv.bias is None
            has_relu = any(isinstance(m, nn.ReLU) for m in block)
            assert has_relu == (f"{s}_{i}" != "3_3")
    assert not any(isinstance(m, nn.ReLU) for m in model.subpixel)


def test_unknown_kwarg_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"lesionseg: unknown argument\(s\) foo; valid: "):
        build_model("lesionseg", foo=1)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) pretrained"):
        build_model("lesionseg", pretrained=True)  # no ImageNet weights exist for LesionSeg


def test_build_model_builds_it() -> None:
    model = build_model("lesionseg", n_out=2, in_channels=3, reading="B")
    assert isinstance(model, LesionSeg) and model.output_stride == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reading": "C"}, r"reading must be one of \('A', 'B'\)"),
        ({"reading": "a"}, "reading"),
        ({"upsample": "nearest"}, r"upsample must be one of \('subpixel', 'bilinear'\)"),
        ({"n_out": 0}, "n_out"),
        ({"in_channels": -1}, "in_channels"),
        ({"n_out": 2.0}, "n_out"),
    ],
)
def test_bad_values_are_value_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lesionseg(**kwargs)


@pytest.mark.parametrize(
    ("reading", "shape", "match"),
    [
        ("A", (30, 32), "divisible by its output stride 4"),
        ("B", (32, 36), "divisible by its output stride 8"),
        ("A", (8, 32), "at least 12"),
        ("B", (16, 48), "at least 24"),
    ],
)
def test_input_size_checked(reading: str, shape: tuple[int, int], match: str) -> None:
    model = lesionseg(reading=reading)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(1, 3, *shape))


def test_smallest_inputs_work() -> None:
    assert lesionseg().eval()(torch.randn(1, 3, 12, 12)).shape == (1, 2, 12, 12)
    assert lesionseg(reading="B").eval()(torch.randn(1, 3, 24, 24)).shape == (1, 2, 24, 24)


@pytest.mark.parametrize("upsample", ["subpixel", "bilinear"])
def test_gradients_reach_the_first_conv(upsample: str) -> None:
    torch.manual_seed(0)
    model = lesionseg(upsample=upsample)
    x = torch.randn(2, 3, 16, 16)
    target = torch.randint(0, 2, (2, 16, 16))
    nn.functional.cross_entropy(model(x), target).backward()
    grad = model.conv1_1.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
