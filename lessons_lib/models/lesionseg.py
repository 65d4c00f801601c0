"""LesionSeg: a small fully convolutional network trained from scratch (ISIC 2017).

D. Ramachandram and T. DeVries, "LesionSeg: Semantic segmentation of skin lesions using Deep
Convolutional Neural Network", arXiv:1703.03372, 2017, Section 3.1 and Table 1. Nine 5x5 / 3x3 /
1x1 convolutions with batch normalisation (all but the last followed by a ReLU), two of them
stride 2, the last three atrous (dilated), then a "subpixel" convolution whose output maps are
rearranged by a pixel shuffle (Shi et al. 2016) into full-resolution per-pixel logits. There is
no pooling, no skip connection and no dropout.

Reading of the (garbled) Table 1
--------------------------------
The table gives, per layer, filter size x number of filters, "Stride/Rate", padding
("Mirror" or "Same"), non-linearity and type::

    Conv1-1  5x5x64   2  Mirror  ReLu  2D Convolution
    Conv1-2  3x3x96   1  Mirror  ReLu  2D Convolution
    Conv1-3  1x1x96   1  Same    ReLu  2D Convolution
    Conv2-1  3x3x128  2  Mirror  ReLu  2D Convolution
    Conv2-2  3x3x256  1  Mirror  ReLu  2D Convolution
    Conv2-3  1x1x256  1  Same    ReLu  2D Convolution
    Conv3-1  3x3x256  2  Mirror  ReLu  Atrous Convolution
    Conv3-2  3x3x256  2  Mirror  ReLu  Atrous Convolution
    Conv3-3  3x3x128  2  Mirror  None  Atrous Convolution
    Subpixel 3x3x32   1  Mirror  None  Subpixel CNN Layer

The "2" of the three atrous rows can be a stride or a rate:

* **Reading A** (default): it is the atrous *rate* (dilation 2) of all three Conv3 layers, as
  their type says (the text says "the last two convolutions are dilated ... with a rate of 2",
  but the table marks three). The features stay at output stride 4 (112 x 112 for the paper's
  448 x 448 input), and the subpixel layer's 32 filters are exactly n_out x r^2 = 2 x 4^2 for a
  4x pixel shuffle back to 448 x 448: the table is self-consistent. This is also how we read
  "number of filters equal to the upsampling factor". **2,054,880 parameters, 56.69 GFLOPs**
  per 448 x 448 image, receptive field **77 px**.
* **Reading B**: Conv3-1 is a plain stride-2 convolution (dilation 1) and Conv3-2/3-3 are atrous
  with rate 2. The features reach output stride 8 (56 x 56), so the subpixel layer needs
  n_out x 8^2 = 128 filters, which contradicts the table's 32. **2,165,568 parameters,
  28.95 GFLOPs**, receptive field 109 px.

Choices the paper leaves open
-----------------------------
* "Mirror" padding is :class:`torch.nn.ReflectionPad2d` (TensorFlow's ``REFLECT``) followed by
  an *unpadded* convolution; "Same" on the 1x1 layers needs no padding at all.
* Batch normalisation ("we also apply batch-normalization for the convolutional layers") follows
  every convolution except the subpixel one, including Conv3-3, which has no ReLU (Table 1:
  "None"). Convolutions feeding a batch norm have no bias (it would be redundant with the
  batch-norm shift); the subpixel convolution has a bias. Without BN on Conv3-3 (a bias
  instead) reading A would have 2,054,752 parameters.
* Two output classes with a softmax, trained with per-pixel cross-entropy (Section 3.3). The
  network returns **logits**; the loss (``nn.CrossEntropyLoss``) applies the softmax. A single
  sigmoid channel (``n_out=1``) would need 16 subpixel filters instead of 32.
* Initialisation is not given ("trained from scratch"): PyTorch's defaults are kept.

The 1x1 "network-in-network" layers
-----------------------------------
Section 3.1 says that the 1x1 convolutions (Conv1-3 and Conv2-3, attributes ``conv1_3`` and
``conv2_3``) "add capacity to the network without increasing the number of parameters". That is
false: they add 96 x 96 + 256 x 256 = **74,752** convolution weights (75,456 with their batch
norms, 3.7 % of reading A); see :func:`nin_parameters`. Since they map 96 -> 96 and
256 -> 256 features, deleting them changes no other layer.

The bilinear ablation
---------------------
The paper prefers the subpixel layer to bilinear upsampling only by citing Shi et al.; it never
measures the difference. ``upsample="bilinear"`` builds that ablation on the *same* features: the
subpixel layer's 3x3 convolution (mirror padded, with bias) predicts ``n_out`` maps at feature
resolution instead of ``n_out x r^2``, and the logits are resized by bilinear interpolation
(``align_corners=False``) by the output stride r. With reading A it has 2,020,290 parameters
(34,590 fewer than the subpixel layer) and 55.82 GFLOPs at 448 x 448 (the interpolation itself is
not counted), and the same 77 px receptive field in the convolutions.

Input height and width must be multiples of the output stride (4 for A, 8 for B) and at least
3 x the output stride, so that the rate-2 mirror padding fits in the feature map.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from lessons_lib.models import register

__all__ = ["LesionSeg", "lesionseg", "mirror_conv", "nin_parameters", "receptive_field"]

READINGS = ("A", "B")
UPSAMPLINGS = ("subpixel", "bilinear")


def mirror_conv(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    bn: bool = True,
    relu: bool = True,
) -> nn.Sequential:
    """One row of Table 1: mirror padding, an unpadded convolution, batch norm, ReLU.

    Args:
        c_in: Input features.
        c_out: Output features (the table's third filter dimension).
        kernel: Square kernel size (5, 3 or 1).
        stride: Convolution stride.
        dilation: Atrous rate.
        bn: Add batch normalisation (the convolution then has no bias).
        relu: Add a ReLU.

    Shape:
        (N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride)) for odd kernels.

    Returns:
        ``nn.Sequential`` with children ``pad`` (omitted for 1x1 kernels, the table's "Same"),
        ``conv``, and ``bn`` and ``relu`` if asked.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    pad = dilation * (kernel - 1) // 2
    if pad:
        layers["pad"] = nn.ReflectionPad2d(pad)
    layers["conv"] = nn.Conv2d(c_in, c_out, kernel, stride=stride, dilation=dilation, bias=not bn)
    if bn:
        layers["bn"] = nn.BatchNorm2d(c_out)
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class LesionSeg(nn.Module):
    """LesionSeg of Ramachandram & DeVries 2017, Table 1 (see the module docstring).

    Args:
        in_channels: Input channels (3: RGB).
        n_out: Output classes (2: background / lesion, softmax).
        upsample: ``"subpixel"`` (the paper: conv to ``n_out * r**2`` maps and a pixel shuffle
            by r) or ``"bilinear"`` (the ablation: conv to ``n_out`` maps and bilinear
            resizing by r), r being the output stride.
        reading: ``"A"`` (Conv3-1..3-3 atrous with rate 2, output stride 4) or ``"B"``
            (Conv3-1 a stride-2 convolution, output stride 8).

    Shape:
        Input (N, in_channels, H, W), H and W multiples of the output stride and at least
        3 x it (paper: 448 x 448).
        Output (N, n_out, H, W) **logits**; apply a softmax for probabilities.

    Attributes:
        conv1_1 ... conv3_3: The rows of Table 1, each from :func:`mirror_conv`;
            ``conv1_3`` and ``conv2_3`` are the 1x1 network-in-network layers.
        subpixel: (``upsample="subpixel"``) ``pad``, ``conv``, ``shuffle`` (``nn.PixelShuffle``).
        bilinear: (``upsample="bilinear"``) ``pad``, ``conv``, ``resize`` (``nn.Upsample``).
        output_stride: 4 (reading A) or 8 (reading B).

    Raises:
        ValueError: an unknown ``reading`` or ``upsample``, or a non-positive channel count.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        n_out: int = 2,
        upsample: str = "subpixel",
        reading: str = "A",
    ) -> None:
        super().__init__()
        if reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
        if upsample not in UPSAMPLINGS:
            raise ValueError(f"upsample must be one of {UPSAMPLINGS}, got {upsample!r}")
        for name, value in (("in_channels", in_channels), ("n_out", n_out)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.reading = reading
        self.upsample = upsample
        self.output_stride = 4 if reading == "A" else 8
        r = self.output_stride

        # Stage 1: output stride 2.
        self.conv1_1 = mirror_conv(in_channels, 64, 5, stride=2)
        self.conv1_2 = mirror_conv(64, 96, 3)
        self.conv1_3 = mirror_conv(96, 96, 1)  # network-in-network
        # Stage 2: output stride 4.
        self.conv2_1 = mirror_conv(96, 128, 3, stride=2)
        self.conv2_2 = mirror_conv(128, 256, 3)
        self.conv2_3 = mirror_conv(256, 256, 1)  # network-in-network
        # Stage 3: atrous, rate 2 (reading B: Conv3-1 strided instead, output stride 8).
        if reading == "A":
            self.conv3_1 = mirror_conv(256, 256, 3, dilation=2)
        else:
            self.conv3_1 = mirror_conv(256, 256, 3, stride=2)
        self.conv3_2 = mirror_conv(256, 256, 3, dilation=2)
        self.conv3_3 = mirror_conv(256, 128, 3, dilation=2, relu=False)  # BN, no ReLU
        # Upsampling by r back to the input size.
        if upsample == "subpixel":
            head = mirror_conv(128, n_out * r * r, 3, bn=False, relu=False)
            head.add_module("shuffle", nn.PixelShuffle(r))
            self.subpixel = head
        else:
            head = mirror_conv(128, n_out, 3, bn=False, relu=False)
            head.add_module(
                "resize", nn.Upsample(scale_factor=r, mode="bilinear", align_corners=False)
            )
            self.bilinear = head

    def forward(self, x: Tensor) -> Tensor:
        """Segment a batch.

        Args:
            x: Images, (N, in_channels, H, W), H and W multiples of the output stride r and
                at least 3r.

        Returns:
            Logits, (N, n_out, H, W).

        Raises:
            ValueError: H or W is not a multiple of r, or smaller than 3r.
        """
        r = self.output_stride
        h, w = x.shape[-2:]
        if h % r or w % r:
            raise ValueError(
                f"LesionSeg (reading {self.reading}) needs H and W divisible by its output "
                f"stride {r}, got {h}x{w}"
            )
        if min(h, w) < 3 * r:
            raise ValueError(
                f"LesionSeg (reading {self.reading}) needs H and W of at least {3 * r} (the "
                f"rate-2 mirror padding must fit in the {r}x smaller feature map), got {h}x{w}"
            )
        x = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        x = self.conv2_3(self.conv2_2(self.conv2_1(x)))
        x = self.conv3_3(self.conv3_2(self.conv3_1(x)))
        if self.upsample == "subpixel":
            return self.subpixel(x)
        return self.bilinear(x)


def nin_parameters(model: LesionSeg, include_bn: bool = True) -> int:
    """Parameters of the two 1x1 network-in-network layers (Conv1-3 and Conv2-3).

    The paper says these layers add capacity "without increasing the number of parameters";
    this counts what they do add.

    Args:
        model: A :class:`LesionSeg`.
        include_bn: Count their batch-norm scales and shifts too (75,456 in all); ``False``
            counts the convolution weights alone (96 x 96 + 256 x 256 = 74,752).

    Returns:
        The number of parameters.
    """
    layers = (model.conv1_3, model.conv2_3)
    if include_bn:
        return sum(p.numel() for layer in layers for p in layer.parameters())
    return sum(layer.conv.weight.numel() for layer in layers)


def receptive_field(model: nn.Module) -> int:
    """Receptive field, in input pixels, of the convolutions of a plain feed-forward chain.

    Walks the ``nn.Conv2d`` modules in registration order (which for :class:`LesionSeg` is
    the forward order): each adds ``(kernel - 1) * dilation`` steps of the current jump (the
    product of the earlier strides). Resizing layers are not counted.

    Args:
        model: The network.

    Returns:
        The side of the square receptive field (77 for reading A, 109 for reading B).
    """
    rf, jump = 1, 1
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            rf += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return rf


@register("lesionseg")
def lesionseg(
    *, n_out: int = 2, in_channels: int = 3, upsample: str = "subpixel", reading: str = "A"
) -> nn.Module:
    """Registry builder for :class:`LesionSeg` (no ``pretrained``: the paper trains from
    scratch). Unknown keyword arguments raise ``TypeError``.

    Raises:
        ValueError: an unknown ``reading`` (``"A"``, ``"B"``) or ``upsample``
            (``"subpixel"``, ``"bilinear"``), or a non-positive channel count.
    """
    return LesionSeg(in_channels=in_channels, n_out=n_out, upsample=upsample, reading=reading)
