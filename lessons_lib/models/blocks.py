"""Layers that several networks share: the convolution, batch norm and ReLU block.

CDNN-29 (:mod:`~lessons_lib.models.cdnn29`) and SLSDeep (:mod:`~lessons_lib.models.slsdeep`)
both follow each convolution with batch normalisation and a ReLU, with no convolution bias (the
batch-norm shift makes it redundant). The block keeps the feature-map size for odd and even
kernels alike: CDNN-29 needs a 4x4 kernel, SLSDeep only 1x1 and 3x3.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["conv_bn_relu"]


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """A stride-1 "same" convolution (no bias), batch normalisation and ReLU.

    An odd kernel is zero-padded ``kernel // 2`` on every side (by the convolution itself). An
    even kernel has no symmetric "same" padding: it is zero-padded ``kernel // 2 - 1`` pixels
    before and ``kernel // 2`` after on each axis (1 before, 2 after for a 4x4 kernel), by a
    leading ``nn.ZeroPad2d``, which is what PyTorch's ``padding="same"`` does.

    Args:
        c_in: Input features.
        c_out: Output features.
        kernel: Square kernel size, at least 1.

    Shape:
        (N, c_in, H, W) -> (N, c_out, H, W).

    Returns:
        ``nn.Sequential`` with children ``conv``, ``bn``, ``relu`` (and a leading ``pad`` for
        even kernels); its state-dict keys are ``conv.weight`` and ``bn.*``.
    """
    total = kernel - 1
    before, after = total // 2, total - total // 2
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if before != after:
        layers["pad"] = nn.ZeroPad2d((before, after, before, after))
        layers["conv"] = nn.Conv2d(c_in, c_out, kernel, bias=False)
    else:
        layers["conv"] = nn.Conv2d(c_in, c_out, kernel, padding=before, bias=False)
    layers["bn"] = nn.BatchNorm2d(c_out)
    layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)
