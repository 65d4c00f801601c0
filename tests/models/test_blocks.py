"""lessons_lib.models.blocks: conv_bn_relu keeps the size for every kernel; both networks use it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lessons_lib.models import blocks, cdnn29, slsdeep
from lessons_lib.models.blocks import conv_bn_relu


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_same_size_and_padding_as_pytorchs_same(kernel: int) -> None:
    torch.manual_seed(0)
    block = conv_bn_relu(3, 5, kernel).eval()
    x = torch.randn(2, 3, 7, 9)
    conv = block.conv
    expected = F.relu(block.bn(F.conv2d(x, conv.weight, padding="same")))
    out = block(x)
    assert out.shape == (2, 5, 7, 9)
    torch.testing.assert_close(out, expected)
    assert ("pad" in dict(block.named_children())) == (kernel % 2 == 0)
    assert conv.bias is None
    assert sum(p.numel() for p in block.parameters()) == 3 * 5 * kernel**2 + 2 * 5


def test_odd_kernels_have_the_plain_conv_bn_relu_layout() -> None:
    # the state-dict keys of saved SLSDeep and CDNN-29 weights
    keys = set(conv_bn_relu(4, 6, 3).state_dict())
    assert keys == {
        "conv.weight",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    }
    assert set(conv_bn_relu(4, 6, 4).state_dict()) == keys  # the padding holds no state


def test_both_networks_use_the_one_block() -> None:
    assert cdnn29.conv_bn_relu is slsdeep.conv_bn_relu is blocks.conv_bn_relu
