"""SLSDeep: a dilated ResNet-50 encoder and a pyramid-pooling decoder, the model of paper 003.

M. M. K. Sarker et al., "SLSDeep: Skin Lesion Segmentation Based on Dilated Residual and Pyramid
Pooling Networks", MICCAI 2018 (arXiv:1805.10241), Sec. 2.1 and Figs. 1-2.

Reading of Sec. 2.1
-------------------
**Encoder.** A stem (conv, BN, ReLU, 3x3 max-pool with stride 2, 64 maps), then the four
ResNet-50 stages with 256, 512, 1024 and 2048 maps. The first, third and fourth have stride 1 and
the second has stride 2, so the output is 1/8 of the input: 2048 x 48 x 48 for a 384 x 384 image.
There is no average pooling and no classifier. The stages are "dilated residual" blocks (DRN-A,
ref. [22]): the strides of stages 3 and 4 become dilations 2 and 4. That is exactly torchvision's
``resnet50(replace_stride_with_dilation=[False, True, True])`` without ``avgpool`` and ``fc``.

**Decoder.**

1. A pyramid pooling network (PSPNet, ref. [26]) with bins 1, 2, 3 and 6. Each bin is an
   adaptive average pooling, then a 1x1 conv 2048 -> 1024 (BN, ReLU), then a bilinear
   upsampling back to the encoder's size.
2. The four pyramid maps are concatenated with the encoder output: 4 x 1024 + 2048 = 6144 maps.
   The paper calls this concatenation the "one skip connection" between the encoder's last layer
   and the PPN output.
3. "Two 3x3 convolutional layers are followed by two upsampling layers", each conv with BN and
   ReLU: ``fuse`` (3x3 conv 6144 -> 512) and a bilinear x2, then ``head`` (3x3 conv
   512 -> ``n_out``) and a bilinear x4 back to the input size.
4. Dropout 0.5 "before the second upsampling layer", then a softmax. We return the
   ``log_softmax``: log-probabilities, which the paper's NLL loss takes directly
   (:class:`lessons_lib.losses.NLLEPELoss` and ``F.nll_loss``).

The final upsampling goes to the input's own size, so any input whose sides are multiples of 8
works; the paper uses 384 x 384.

**Logits keep BN and ReLU.** The paper puts "a ReLU activation with batch normalization" on both
3x3 convs, and the public code's head ends the same way (``conv -> BN -> ReLU``, no separate 1x1
classifier). We keep both. The BN is counted in the parameter figures below (9,220 =
9,216 weights + 4 BN parameters for the 512 -> 2 conv), so a different head would not give them.
The ReLU makes both scores non-negative. Their difference, which is all a two-class softmax
sees, still ranges over all reals: for example, background has score 0 and lesion a positive
score. Where both scores are 0, the pixel predicts 0.5 and passes no gradient. The BN shift
lets the network move away from that state, and the authors trained this head.

Parameters and FLOPs (``n_out=2``, 384 x 384, forward, multiply-add = 2 FLOPs)
------------------------------------------------------------------------------
=========================================  ===========  =======  =====================
reading                                    parameters   GFLOPs   builder arguments
=========================================  ===========  =======  =====================
paper text (PPN 1024, concat 6144)         60,226,628   242.97   default
public code (PPN 512, concat 4096)         46,591,044   199.38   ``ppn_width=512``
SLSDeep+ASC on the paper text (see below)  60,760,196   245.66   ``skips="all"``
=========================================  ===========  =======  =====================

The paper-text total breaks down as:

* encoder: 23,508,032;
* PPN: 8,396,800 (4 x (2048 x 1024 + 2,048 BN));
* ``fuse``: 28,312,576 (6144 x 512 x 9 + 1,024 BN);
* ``head``: 9,220.

The paper gives no count. Its "about 100 images per second" at this cost would need 20-25
TFLOP/s sustained, about twice the peak of the TITAN X it was trained on.

Deviations and choices not stated in the paper
----------------------------------------------
* **Stem.** The paper's stem is a *3x3* conv, randomly initialised. We keep torchvision's
  ImageNet-pretrained 7x7 stride-2 conv, BN, ReLU and 3x3 max-pool. It has the same output
  (64 maps at 1/4 resolution), and pretrained weights exist for it. The public code uses the
  ADE20K "deep stem" (three 3x3 convs, 128 maps) instead; with the paper decoder that gives
  60,350,404 parameters and 250.93 GFLOPs.
* **PPN BN + ReLU.** The paper names only the 1x1 conv. BN and ReLU after it are PSPNet's and
  the public code's practice, and the 1x1 convs then have no bias.
* **Width 512 of** ``fuse``. The paper does not give it. 512 comes from the public code.
* **Upsampling.** Bilinear with ``align_corners=False`` (PyTorch's default). The paper says
  only "upsampling layers".
* **Initialisation.** New layers use PyTorch's default (the code draws its decoder convs from
  N(0, 0.001)). Every decoder conv feeds a BN, so the scale of the initial weights matters
  little.

SLSDeep+ASC (``skips="all"``)
-----------------------------
In the paper's ablation, "skip connections between all layers of the encoder and decoder"
scored lower (Table 1), and the paper does not say how they were wired. Our wiring follows
the DeepLabv3+ decoder:

* Each of the stem, ``layer1``, ``layer2`` and ``layer3`` outputs is reduced to 48 maps by a
  1x1 conv, BN and ReLU.
* Each reduced map joins the decoder at the conv that works at its resolution. ``layer2`` and
  ``layer3`` (1/8) are concatenated with the 6144 PPN maps before ``fuse``. The stem and
  ``layer1`` (1/4) are concatenated with the x2-upsampled decoder map before ``head``.
* ``layer4`` is already connected (the one skip connection).

The narrow 1x1 reduction keeps the 6144-map context from being swamped, and it adds only
533,568 parameters. Every encoder stage then reaches the decoder at matching resolution, with
no extra upsampling layer that the paper does not describe. A skip whose size differs from the
decoder map (only possible when a side is not a multiple of 8) is resized bilinearly.

Training
--------
The paper trains with two learning rates: 0.001 for the pretrained encoder and 0.01 for the
decoder. ``model.splitter`` (:func:`slsdeep_splitter`) gives fastai those two parameter groups.
The ASC reductions count as decoder: they are new layers. In training mode the 1x1 pyramid bin
has one value per map, so BN needs batches of at least 2 images, as in PSPNet.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50

from lessons_lib.models import register
from lessons_lib.models.blocks import conv_bn_relu
from lessons_lib.models.pretrained import load_imagenet

__all__ = ["SLSDeep", "slsdeep", "slsdeep_splitter"]

PYRAMID_BINS = (1, 2, 3, 6)  # PPN rescaling sizes, Sec. 2.1
FUSE_WIDTH = 512  # output maps of the first 3x3 decoder conv (from the public code)
SKIP_WIDTH = 48  # maps of each reduced encoder stage in SLSDeep+ASC
ENCODER_WIDTHS = {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
# SLSDeep+ASC: the decoder conv each encoder stage joins (the one at its resolution).
ASC_JOINS = {"stem": "head", "layer1": "head", "layer2": "fuse", "layer3": "fuse"}


def dilated_resnet50(
    in_channels: int = 3, pretrained: bool | str | Path = False
) -> tuple[nn.Sequential, str]:
    """The encoder: torchvision's ResNet-50 with stages 3-4 dilated (DRN-A), output stride 8.

    Args:
        in_channels: Input channels; a value other than 3 replaces the stem conv (random init).
        pretrained: See :func:`lessons_lib.models.pretrained.load_imagenet`.

    Shape:
        (N, in_channels, H, W) -> (N, 2048, H/8, W/8).

    Returns:
        ``(encoder, weights_source)``: an ``nn.Sequential`` of ``stem``, ``layer1`` ...
        ``layer4`` and a sentence saying where its weights came from.
    """
    net = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    source = load_imagenet(net, "resnet50", pretrained)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    encoder = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),  # 64 maps, 1/4
            layer1=net.layer1,  # 256 maps, 1/4
            layer2=net.layer2,  # 512 maps, 1/8
            layer3=net.layer3,  # 1024 maps, 1/8, dilation 2
            layer4=net.layer4,  # 2048 maps, 1/8, dilation 4
        )
    )
    return encoder, source


def upsample(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize of ``x`` to ``size`` (H, W)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SLSDeep(nn.Module):
    """SLSDeep of Sarker et al. 2018, Sec. 2.1. The module docstring gives the reading.

    Args:
        n_out: Output maps, i.e. classes: 2 in the paper (background, lesion).
        pretrained: ``True`` for torchvision's ImageNet ResNet-50 weights, a path to a local
            copy, or ``False`` (random initialisation).
        ppn_width: Maps of each pyramid level: 1024 in the paper's text, 512 in the public code.
        skips: ``"one"`` (SLSDeep: only the encoder output is concatenated with the PPN maps)
            or ``"all"`` (the SLSDeep+ASC ablation: every encoder stage reaches the decoder).
        in_channels: Input channels. Must be 3 with pretrained weights.
        dropout: Dropout probability before the last upsampling (0.5 in the paper).

    Shape:
        Input (N, in_channels, H, W), H and W multiples of 8 (paper: 384 x 384); other sizes
        run too, with the intermediate maps rounded by the strided layers.
        Output (N, n_out, H, W) **log-probabilities** (``exp`` sums to 1 over channels).

    Attributes:
        encoder: Dilated ResNet-50, ``nn.Sequential`` of ``stem``, ``layer1`` ... ``layer4``.
        pyramid_pooling: One ``pool -> conv -> bn -> relu`` branch per bin (1, 2, 3, 6).
        fuse: 3x3 conv (PPN maps + encoder output [+ skips] -> 512), BN, ReLU.
        head: 3x3 conv (512 [+ skips] -> n_out), BN, ReLU.
        dropout: ``nn.Dropout(dropout)`` before the last upsampling.
        skips: The ASC 1x1 reductions (``stem`` ... ``layer3``); empty for ``skips="one"``.
        weights_source: Where the encoder weights came from (a sentence).
        splitter: :func:`slsdeep_splitter`, the encoder/decoder parameter groups for fastai.
    """

    def __init__(
        self,
        *,
        n_out: int = 2,
        pretrained: bool | str | Path = False,
        ppn_width: int = 1024,
        skips: str = "one",
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_arguments(n_out, pretrained, ppn_width, skips, in_channels, dropout)

        # Encoder: dilated residual network, output stride 8.
        self.encoder, self.weights_source = dilated_resnet50(in_channels, pretrained)
        c_enc = ENCODER_WIDTHS["layer4"]

        # Decoder: pyramid pooling network ...
        self.pyramid_pooling = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(bins), conv_bn_relu(c_enc, ppn_width, 1))
            for bins in PYRAMID_BINS
        )
        # ... (SLSDeep+ASC only: the earlier encoder stages, each reduced to SKIP_WIDTH maps) ...
        joins = ASC_JOINS if skips == "all" else {}
        self.skips = nn.ModuleDict(
            {name: conv_bn_relu(ENCODER_WIDTHS[name], SKIP_WIDTH, 1) for name in joins}
        )
        fuse_skips = SKIP_WIDTH * sum(conv == "fuse" for conv in joins.values())
        head_skips = SKIP_WIDTH * sum(conv == "head" for conv in joins.values())
        # ... and two 3x3 convolutions, each followed by an upsampling layer.
        c_cat = c_enc + len(PYRAMID_BINS) * ppn_width  # 6144 at the paper's width
        self.fuse = conv_bn_relu(c_cat + fuse_skips, FUSE_WIDTH, 3)
        self.head = conv_bn_relu(FUSE_WIDTH + head_skips, n_out, 3)
        self.dropout = nn.Dropout(dropout)

        self.splitter = slsdeep_splitter

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """The output of every encoder stage, by name (``stem``, ``layer1`` ... ``layer4``)."""
        features = {}
        for name, stage in self.encoder.named_children():
            x = stage(x)
            features[name] = x
        return features

    def join(self, x: Tensor, features: dict[str, Tensor], conv: str) -> Tensor:
        """Concatenate to ``x`` the reduced encoder stages that join the decoder at ``conv``
        (SLSDeep+ASC; with ``skips="one"`` return ``x`` unchanged)."""
        maps = [x]
        for name, reduction in self.skips.items():
            if ASC_JOINS[name] == conv:
                skip = reduction(features[name])
                maps.append(
                    skip if skip.shape[-2:] == x.shape[-2:] else upsample(skip, x.shape[-2:])
                )
        return torch.cat(maps, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Segment a batch.

        Args:
            x: Images, (N, in_channels, H, W), H and W multiples of 8.

        Returns:
            Log-probabilities, (N, n_out, H, W).
        """
        size = x.shape[-2:]
        features = self.encode(x)
        f = features["layer4"]  # (N, 2048, H/8, W/8)

        # Pyramid pooling, concatenated with the encoder output: the one skip connection.
        pyramid = [upsample(level(f), f.shape[-2:]) for level in self.pyramid_pooling]
        f = torch.cat([f, *pyramid], dim=1)  # (N, 6144, H/8, W/8)

        f = self.fuse(self.join(f, features, "fuse"))  # 3x3 conv, BN, ReLU -> 512 maps
        f = F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)  # H/4
        f = self.head(self.join(f, features, "head"))  # 3x3 conv, BN, ReLU -> n_out maps
        f = self.dropout(f)
        f = upsample(f, size)  # x4, back to the input size
        return F.log_softmax(f, dim=1)


def slsdeep_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups for fastai, ``[encoder, decoder]``, so the paper's two learning
    rates apply (0.001 and 0.01, e.g. ``lr=slice(1e-3, 1e-2)``). The decoder group holds every
    parameter outside ``model.encoder``, including the ASC reductions."""
    encoder = list(model.encoder.parameters())
    in_encoder = {id(p) for p in encoder}
    return [encoder, [p for p in model.parameters() if id(p) not in in_encoder]]


def _check_arguments(
    n_out: int,
    pretrained: bool | str | Path,
    ppn_width: int,
    skips: str,
    in_channels: int,
    dropout: float,
) -> None:
    """Raise ``ValueError`` (``TypeError`` for a wrong ``pretrained`` type) on a bad argument."""
    if not isinstance(n_out, int) or n_out < 2:
        raise ValueError(
            f"SLSDeep: n_out must be an int >= 2 (the output is a softmax over n_out classes; "
            f"the paper uses 2), got {n_out!r}"
        )
    if not isinstance(ppn_width, int) or ppn_width < 1:
        raise ValueError(
            f"SLSDeep: ppn_width must be a positive int (1024 in the paper, 512 in the public "
            f"code), got {ppn_width!r}"
        )
    if skips not in ("one", "all"):
        raise ValueError(
            f"SLSDeep: skips must be 'one' (SLSDeep) or 'all' (SLSDeep+ASC), got {skips!r}"
        )
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"SLSDeep: in_channels must be a positive int, got {in_channels!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"SLSDeep: dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(pretrained, (bool, str, Path)):
        raise TypeError(
            f"SLSDeep: pretrained must be True, False or a path to a weights file, got "
            f"{type(pretrained).__name__}"
        )
    if in_channels != 3 and pretrained is not False:
        raise ValueError(
            f"SLSDeep: ImageNet weights need 3 input channels, got in_channels={in_channels}; "
            f"pass pretrained=False to train a {in_channels}-channel network from scratch"
        )


@register("slsdeep")
def slsdeep(
    *,
    n_out: int = 2,
    pretrained: bool | str | Path = False,
    ppn_width: int = 1024,
    skips: str = "one",
    in_channels: int = 3,
    dropout: float = 0.5,
) -> nn.Module:
    """Registry builder for :class:`SLSDeep` (keyword arguments only; see the class).

    Returns:
        The model, with ``model.splitter`` (:func:`slsdeep_splitter`) and
        ``model.weights_source``.

    Raises:
        ValueError: a bad argument, or ``pretrained`` names a missing or invalid file.
        TypeError: an unknown keyword argument.
    """
    return SLSDeep(
        n_out=n_out,
        pretrained=pretrained,
        ppn_width=ppn_width,
        skips=skips,
        in_channels=in_channels,
        dropout=dropout,
    )
