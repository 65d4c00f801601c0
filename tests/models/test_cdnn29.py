"""CDNN-29 (Yuan & Lo 2017, Table I): parameter count, shapes, layer layout, dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lessons_lib.models import build_model, count_parameters
from lessons_lib.models.cdnn29 import CDNN29

PAPER_PARAMS = 5_042_589  # Section III-A


def test_parameter_count_matches_paper_within_one_percent():
    n = count_parameters(build_model("cdnn29", in_channels=7))
    print(f"CDNN29 trainable parameters: {n:,} (paper {PAPER_PARAMS:,})")
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.01
    assert n == 5_036_865  # the reading documented in lessons_lib/models/cdnn.py


def test_rgb_ablation_has_fewer_first_layer_weights():
    n7 = count_parameters(CDNN29(in_channels=7))
    n3 = count_parameters(CDNN29(in_channels=3))
    assert n7 - n3 == 4 * 16 * 3 * 3  # four extra input channels into conv-1-1 (3x3, 16)


@pytest.mark.parametrize(("h", "w"), [(192, 256), (96, 128)])
def test_output_has_input_size_and_one_channel(h, w):
    model = build_model("cdnn29").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 7, h, w))
    assert out.shape == (2, 1, h, w)
    assert torch.isfinite(out).all()


def test_builder_rejects_unknown_arguments():
    with pytest.raises(TypeError, match="unknown argument.*pretrained.*valid: in_channels"):
        build_model("cdnn29", pretrained=True)  # no ImageNet weights exist for CDNN-29


def test_rejects_sizes_not_divisible_by_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        CDNN29()(torch.rand(1, 7, 100, 128))


def test_layer_layout_follows_table_one():
    model = CDNN29()
    names = [name for name, _ in model.features.named_children()]
    convs = [n for n in names if n.startswith(("conv", "decv"))]
    assert len(convs) == 17 and names.count("pool1") == 1
    assert sum(n.startswith("pool") for n in names) == 4
    assert sum(n.startswith("ups") for n in names) == 4
    kernels = {n: getattr(model.features, n).conv.kernel_size for n in convs}
    assert {n for n, k in kernels.items() if k == (4, 4)} == {"conv3_2", "decv3_1"}
    assert all(k in ((3, 3), (4, 4)) for k in kernels.values())
    widths = [getattr(model.features, n).conv.out_channels for n in convs]
    assert widths == [16, 32, 64, 64, 128, 128, 256, 256, 512, 256, 256, 128, 128, 128, 64, 32, 16]
    for n in convs:  # batch norm and ReLU after every conv/deconv
        block = getattr(model.features, n)
        assert isinstance(block.bn, nn.BatchNorm2d) and isinstance(block.relu, nn.ReLU)
    assert model.output.kernel_size == (1, 1) and model.output.out_channels == 1


def test_dropout_sits_before_conv4_1_and_decv5_1():
    model = CDNN29(dropout=0.3)
    names = [name for name, _ in model.features.named_children()]
    drops = [
        i for i, (_, m) in enumerate(model.features.named_children()) if isinstance(m, nn.Dropout)
    ]
    assert len(drops) == 2
    assert [names[i + 1] for i in drops] == ["conv4_1", "decv5_1"]
    assert all(model.features[i].p == 0.3 for i in drops)
    assert CDNN29().features.drop1.p == 0.5


def test_dropout_is_random_in_training_only():
    torch.manual_seed(0)
    model = CDNN29(in_channels=3)
    x = torch.rand(2, 3, 32, 48)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = CDNN29(in_channels=7)
    target = torch.zeros(2, 32, 32)
    target[:, 8:24, 8:24] = 1
    F.binary_cross_entropy_with_logits(model(torch.rand(2, 7, 32, 32))[:, 0], target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
