"""CDNN-29: the convolutional-deconvolutional network of Yuan & Lo (ISIC 2017 winner).

Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image Segmentation with Enhanced
Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health Inform., 2017 (arXiv:1709.09780),
Section III-A and Table I. The network is a plain encoder-decoder *without* skip connections:
four conv stages with 2x2 max-pooling, a 512-feature bottleneck, four deconv stages with 2x2
upsampling, and a 1-feature output map. Every conv/deconv is followed by batch normalisation and
a ReLU (Section III-A); two dropout layers with p = 0.5 sit before conv-4-1 and decv-5-1
(Section III-B).

Reading of the (garbled) Table I and the parameter count
--------------------------------------------------------
The paper reports 5,042,589 trainable parameters for a 7-channel input. Our reading:

* Kernels are 3x3 everywhere except conv-3-2 and decv-3-1, which are 4x4 (the table's two
  "4x4" entries, symmetric around the bottleneck: both work at 1/4 resolution). A 4x4 kernel
  with stride 1 has no symmetric "same" padding, so we zero-pad 1 pixel before and 2 after
  (what PyTorch's ``padding="same"`` does), keeping the feature-map size.
* The output row reads "I x3 1"; we read it as a **1x1** convolution to 1 feature ("3x3 kernels
  in *nearly* all layers") with a bias and no batch norm / ReLU. It returns **logits**: the
  paper's sigmoid is applied by the loss (:class:`lessons_lib.losses.JaccardDistance`) and by
  its ``activation`` at prediction time.
* Deconvolution layers have stride 1 (the resolution changes only in the "ups" layers), and a
  stride-1 transposed convolution is a convolution with a flipped kernel: same function class,
  same parameter count. We therefore write decv layers as ``nn.Conv2d``.
* "ups" is parameter-free 2x2 nearest-neighbour upsampling (Lasagne's ``Upscale2DLayer``),
  "pool" is 2x2 max-pooling.
* Convs feeding a batch norm have no bias, as in Lasagne's ``batch_norm`` helper (the bias is
  redundant with the batch-norm shift); batch norm has a learnable scale and shift.

This gives **5,036,865** trainable parameters at ``in_channels=7`` (-0.114 % of the paper's
5,042,589). Alternative readings, all within 0.25 %: conv biases kept 5,039,329 (-0.065 %);
3x3 output 5,036,993; counting batch-norm running statistics as Lasagne's ``count_params``
does without ``trainable=True``: 5,041,793 (-0.016 %). No simple reading reaches the exact
figure, so the residual ~0.1 % is a detail the paper does not give.

The layer count agrees with the name: input + 9 conv + 4 pool + 2 dropout + 8 decv + 4 ups +
output = 29 layers (batch norm and ReLU not counted), which also supports "no skip connections".

Input height and width must be multiples of 16 (four poolings); the paper uses 192x256.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from lessons_lib.models import register
from lessons_lib.models.blocks import conv_bn_relu

__all__ = ["CDNN29", "cdnn29"]

# (name, kernel, out_features) of Table I, top to bottom; "pool", "ups" and "drop" carry no kernel.
_ENCODER: list[tuple[str, int, int]] = [
    ("conv1_1", 3, 16),
    ("conv1_2", 3, 32),
    ("pool1", 0, 0),
    ("conv2_1", 3, 64),
    ("conv2_2", 3, 64),
    ("pool2", 0, 0),
    ("conv3_1", 3, 128),
    ("conv3_2", 4, 128),
    ("pool3", 0, 0),
    ("drop1", 0, 0),
    ("conv4_1", 3, 256),
    ("conv4_2", 3, 256),
    ("pool4", 0, 0),
    ("conv5", 3, 512),
]
_DECODER: list[tuple[str, int, int]] = [
    ("decv1", 3, 256),
    ("ups1", 0, 0),
    ("decv2_1", 3, 256),
    ("decv2_2", 3, 128),
    ("ups2", 0, 0),
    ("decv3_1", 4, 128),
    ("decv3_2", 3, 128),
    ("ups3", 0, 0),
    ("decv4_1", 3, 64),
    ("decv4_2", 3, 32),
    ("ups4", 0, 0),
    ("drop2", 0, 0),
    ("decv5_1", 3, 16),
]


class CDNN29(nn.Module):
    """The 29-layer CDNN of Yuan & Lo 2017, Table I (see the module docstring for the reading).

    Args:
        in_channels: Input channels; 7 = RGB + HSV + L of CIELAB (Section II), 3 for the
            RGB-only ablation of Tables IV/V.
        n_out: Output maps; 1 in the paper (binary lesion map).
        dropout: Probability of the two dropout layers (before conv-4-1 and decv-5-1), 0.5 in
            the paper (Section III-B).

    Shape:
        Input (N, in_channels, H, W) with H and W multiples of 16 (paper: 192 x 256).
        Output (N, n_out, H, W) **logits**; apply a sigmoid for probabilities.

    Attributes:
        features: ``nn.Sequential`` of every layer up to decv-5-1, named after Table I
            (``conv1_1`` ... ``conv5``, ``decv1`` ... ``decv5_1``, ``pool*``, ``ups*``,
            ``drop1``, ``drop2``).
        output: The final 1x1 convolution.
    """

    def __init__(self, in_channels: int = 7, n_out: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = in_channels
        for name, kernel, c_out in _ENCODER + _DECODER:
            if name.startswith("pool"):
                layers[name] = nn.MaxPool2d(2)
            elif name.startswith("ups"):
                layers[name] = nn.Upsample(scale_factor=2, mode="nearest")
            elif name.startswith("drop"):
                layers[name] = nn.Dropout(dropout)
            else:
                layers[name] = conv_bn_relu(c, c_out, kernel)
                c = c_out
        self.features = nn.Sequential(layers)
        self.output = nn.Conv2d(c, n_out, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Segment a batch.

        Args:
            x: Images, (N, in_channels, H, W), H and W multiples of 16.

        Returns:
            Logits, (N, n_out, H, W).

        Raises:
            ValueError: H or W is not a multiple of 16.
        """
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"CDNN29 needs H and W divisible by 16, got {h}x{w}")
        return self.output(self.features(x))


@register("cdnn29")
def cdnn29(*, in_channels: int = 7, n_out: int = 1, dropout: float = 0.5) -> CDNN29:
    """Registry builder for :class:`CDNN29`. It takes no ``pretrained``: the paper trains from
    scratch (Section III-B), and no ImageNet weights exist for this network.

    Args:
        in_channels: Input channels (7: RGB + HSV + L; 3 for the RGB ablation).
        n_out: Output maps (1: lesion logits).
        dropout: Probability of the two dropout layers.
    """
    return CDNN29(in_channels=in_channels, n_out=n_out, dropout=dropout)
