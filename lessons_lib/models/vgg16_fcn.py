"""VGG16 FCN with concatenation fusion: the network of Qi et al. (ISIC 2017, paper 004).

J. Qi, M. Le, C. Li and P. Zhou, "Global and Local Information Based Deep Network for Skin
Lesion Segmentation", ISBI 2017 Skin Lesion Analysis Towards Melanoma Detection challenge,
arXiv:1703.05467, 2017. Sections 2.1 (basic network) and 2.2 (skip layers), Fig. 2.

What the paper says
-------------------
* Start from the ImageNet VGG 16-layer net, keep its 13 convolutions (with their weights),
  discard the last fully connected layer and the softmax, and replace the two remaining fully
  connected layers by *randomly initialised* convolutions (Section 2.1).
* After each of the five pooling layers, and after "the last convolution layer" of that
  network, put a 1x1 convolution giving a 2-channel prediction map: six maps (Section 2.2).
* Upsample each map to the input size with its own randomly initialised, learned
  deconvolution (transposed convolution), concatenate the six maps into 6 x 2 = 12 channels,
  and predict with a randomly initialised 1x1 convolution (Section 2.2). FCN (Long et al.)
  *sums* its maps instead; the paper argues for concatenation without measuring the difference.
* Train with a per-pixel softmax loss: the network returns logits, the loss does the softmax.

Our reading (the paper gives no kernel sizes, no count and no code)
--------------------------------------------------------------------
* fc6 is a 7x7 convolution, 512 -> 4096, zero padding 3 (FCN's shape for VGG's first fully
  connected layer; the padding keeps pool5's size, 12x12 at 384x384, as matconvnet-fcn does),
  fc7 a 1x1 convolution 4096 -> 4096. Each is followed by a ReLU and a dropout of 0.5, VGG's
  "2 dropout layers" that the paper counts.
* fc6 convolves only the part of its 7x7 kernel that can overlap pool5 (:class:`CroppedConv2d`):
  below 4x4 (inputs under 128x128, e.g. 2x2 at the 64x64 smoke size) most of the kernel only
  ever meets the zero padding. Same outputs and gradients, same parameters and state_dict.
* The sixth 1x1 score convolution sits on fc7, "the last convolution layer" of the modified
  network (on conv5_3 the fc layers would feed nothing).
* Each deconvolution upsamples by f = 2, 4, 8, 16, 32, 32 (pool1 ... pool5, fc7) with a full
  2 -> 2 ``ConvTranspose2d`` of kernel 2f, stride f, padding f/2 and no bias, which gives the
  input size exactly. Score and fuse convolutions have a bias.

That is 18 layers on the deepest path (13 conv, fc6, fc7, score, deconv, fuse: the paper's
"less than 20 layers") and, at ``n_out=2``, **134,309,926** parameters: VGG convolutions
14,714,688; fc6 + fc7 119,545,856; six score convolutions 11,148; six deconvolutions 38,208;
fuse 26. One 384x384 image costs about **124.68 GFLOPs** forward (a multiply-add counts 2).
``fusion="sum"`` (FCN's rule, no fuse convolution) has 26 parameters fewer: 134,309,900.

Deviations from the paper
-------------------------
* ImageNet weights are torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (RGB, inputs scaled to
  [0, 1] and normalised with the ImageNet mean and standard deviation), not the Caffe model
  zoo's (BGR, 0-255, mean subtracted) that the MatConvNet implementation used.
* The new layers (fc6, fc7, scores, deconvolutions, fuse) use PyTorch's default random
  initialisation; the paper does not say which random initialisation it used. Because random
  64x64 deconvolution kernels start as noisy upsamplers, ``deconv_init="bilinear"`` starts them
  as bilinear interpolation instead (FCN's choice; a fallback if training stalls, not the
  paper's setting).
* Input height and width must be multiples of 32 (the paper uses 384x384) so that every map
  comes back at exactly the input size.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import vgg16 as tv_vgg16

from lessons_lib.models import register
from lessons_lib.models.pretrained import Pretrained, load_imagenet

__all__ = ["CroppedConv2d", "VGG16FCN", "bilinear_kernel", "vgg16_fcn", "vgg16_fcn_splitter"]

# Index of each max-pooling layer in torchvision's ``vgg16().features``: block b ends there.
POOL_INDICES = (4, 9, 16, 23, 30)
# The six taps and the upsampling factor from each back to the input size.
TAPS = {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32, "fc7": 32}
FUSIONS = ("concat", "sum")
DECONV_INITS = ("random", "bilinear")


def vgg_blocks(features: nn.Sequential) -> list[nn.Sequential]:
    """Cut torchvision's ``vgg16().features`` into its five blocks, with VGG's layer names.

    Args:
        features: The 31 layers of torchvision's VGG16 convolutional part.

    Returns:
        Five ``nn.Sequential`` blocks ending at pool1 ... pool5, whose layers are named
        ``conv{b}_{i}``, ``relu{b}_{i}`` and ``pool{b}`` (the same module objects, so loaded
        weights are kept).
    """
    blocks, start = [], 0
    for b, end in enumerate(POOL_INDICES, start=1):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        i = 0
        for layer in features[start : end + 1]:
            if isinstance(layer, nn.Conv2d):
                i += 1
                layers[f"conv{b}_{i}"] = layer
            elif isinstance(layer, nn.ReLU):
                layers[f"relu{b}_{i}"] = layer
            else:
                layers[f"pool{b}"] = layer
        blocks.append(nn.Sequential(layers))
        start = end + 1
    return blocks


def reachable_window(size: int, kernel: int, padding: int) -> tuple[int, int, int, int]:
    """The kernel taps along one axis that ever touch the input, for a stride-1 convolution.

    Output ``i`` (``0 <= i < size + 2 * padding - kernel + 1``) reads input ``i + j - padding``
    through tap ``j``; tap ``j`` meets the input for some ``i`` iff
    ``kernel - size - padding <= j <= size - 1 + padding``. Every other tap only ever multiplies
    zero padding, so dropping it and trimming the padding by the taps dropped on each side gives
    the same output.

    Args:
        size: Input length along the axis.
        kernel: Kernel length along the axis.
        padding: Zero padding on each side along the axis.

    Returns:
        ``(start, stop, pad_before, pad_after)``: taps ``start:stop`` are the reachable ones;
        convolving with them and padding ``pad_before`` / ``pad_after`` (both >= 0) gives the
        full convolution's output. ``(0, kernel, padding, padding)`` when every tap is reachable
        or the output would be empty (nothing to crop: the full convolution decides).
    """
    if size + 2 * padding - kernel + 1 < 1:
        return 0, kernel, padding, padding
    start = max(0, kernel - size - padding)
    stop = min(kernel, size + padding)
    return start, stop, padding - start, padding - (kernel - stop)


class CroppedConv2d(nn.Conv2d):
    """A ``Conv2d`` that convolves only the kernel taps that can overlap its input.

    Why: fc6 is a 7x7 convolution with zero padding 3 on pool5, which is only H/32 x W/32. When
    pool5 is smaller than 4x4 (inputs under 128x128, e.g. 2x2 at the 64x64 smoke size) the outer
    taps of the kernel only ever meet the zero padding: at 2x2 only the central 3x3 of the 7x7
    taps does any work, so the full convolution does 49/9 the multiply-adds, the rest with
    zeros.

    What: for stride 1, dilation 1 and zero padding, :meth:`forward` slices the weight to the
    reachable rows and columns (:func:`reachable_window`) and trims the padding accordingly.
    The output is the full convolution's (up to float rounding: fewer zero terms are summed),
    and so is the weight gradient: the reachable taps get the same gradient, the others zero, as
    before. The parameter is still the full kernel, so ``state_dict``, parameter counts and
    checkpoint sizes are those of ``nn.Conv2d`` (the full-size weight gradient and optimizer
    state too); only the compute and the convolution's working memory drop. When every
    tap is reachable (pool5 4x4 or more, e.g. 12x12 at the paper's 384x384), or for any other
    stride, dilation or padding mode, it is plain ``nn.Conv2d.forward``.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` (N, C_in, H, W) with the taps of the kernel that can reach it."""
        if (
            self.stride != (1, 1)
            or self.dilation != (1, 1)
            or self.padding_mode != "zeros"
            or not isinstance(self.padding, tuple)  # "same" / "valid"
        ):
            return super().forward(x)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        r0, r1, top, bottom = reachable_window(x.shape[-2], kh, ph)
        c0, c1, left, right = reachable_window(x.shape[-1], kw, pw)
        if (r0, r1, c0, c1) == (0, kh, 0, kw):
            return super().forward(x)
        weight = self.weight[:, :, r0:r1, c0:c1]  # a view: the gradient lands in the full kernel
        if top == bottom and left == right:
            return F.conv2d(x, weight, self.bias, padding=(top, left), groups=self.groups)
        x = F.pad(x, (left, right, top, bottom))  # uneven kernels or paddings
        return F.conv2d(x, weight, self.bias, groups=self.groups)


def conv_relu_drop(c_in: int, c_out: int, kernel: int, dropout: float) -> nn.Sequential:
    """A fully connected layer of VGG rewritten as a convolution: conv, ReLU, dropout.

    Args:
        c_in: Input channels.
        c_out: Output channels (4096 for fc6 and fc7).
        kernel: Square kernel size (7 for fc6, 1 for fc7), zero-padded to keep the size.
            Above 1 the convolution is a :class:`CroppedConv2d` (same parameters).
        dropout: Dropout probability.

    Shape:
        (N, c_in, H, W) -> (N, c_out, H, W).

    Returns:
        ``nn.Sequential`` with children ``conv``, ``relu``, ``drop``.
    """
    return nn.Sequential(
        OrderedDict(
            conv=(CroppedConv2d if kernel > 1 else nn.Conv2d)(
                c_in, c_out, kernel, padding=kernel // 2
            ),
            relu=nn.ReLU(inplace=True),
            drop=nn.Dropout(dropout),
        )
    )


def upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learned upsampling by ``factor``: transposed conv, kernel 2f, stride f, padding f/2.

    Shape:
        (N, channels, H, W) -> (N, channels, factor * H, factor * W).
    """
    return nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )


def bilinear_kernel(channels: int, factor: int) -> Tensor:
    """Weights making :func:`upsampler` a bilinear interpolation of each channel (FCN's init).

    Args:
        channels: Input and output channels (each channel is upsampled on its own).
        factor: Upsampling factor f (the kernel is 2f x 2f).

    Returns:
        Tensor (channels, channels, 2f, 2f): the bilinear kernel on the diagonal, zero elsewhere.
    """
    size = 2 * factor
    center = factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


class VGG16FCN(nn.Module):
    """Qi et al.'s VGG16 FCN: six score maps, upsampled and fused (see the module docstring).

    Args:
        n_out: Classes of the output map (2 in the paper: skin and lesion, softmax loss).
        fusion: ``"concat"`` (the paper): concatenate the six upsampled maps and predict with a
            1x1 convolution. ``"sum"`` (FCN): add the six maps, no fuse convolution.
        dropout: Dropout probability after fc6 and fc7 (0.5, as in VGG).
        deconv_init: ``"random"`` (the paper: PyTorch's default init) or ``"bilinear"``
            (each deconvolution starts as bilinear interpolation, as in FCN).
        features: torchvision's ``vgg16().features`` (ImageNet weights or not, any input
            channels); ``None`` builds a randomly initialised one for RGB input.

    Shape:
        Input (N, in_channels, H, W) with H and W multiples of 32 (paper: 384x384).
        Output (N, n_out, H, W) **logits**; apply a softmax over dim 1 for probabilities.

    Attributes:
        block1 ... block5: VGG16's convolution blocks, each ending at its max-pooling
            (pool1 ... pool5 at 1/2 ... 1/32 of the input size; layers ``conv1_1`` ...).
        fc6, fc7: VGG's fully connected layers as convolutions, randomly initialised.
        score: ``ModuleDict`` of six 1x1 convolutions to ``n_out`` maps, keyed by tap
            (``pool1`` ... ``pool5``, ``fc7``).
        upsample: ``ModuleDict`` of six transposed convolutions back to the input size.
        fuse: The final 1x1 convolution (``6 * n_out -> n_out``); ``None`` for ``"sum"``.
    """

    def __init__(
        self,
        n_out: int = 2,
        fusion: str = "concat",
        dropout: float = 0.5,
        deconv_init: str = "random",
        features: nn.Sequential | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if deconv_init not in DECONV_INITS:
            raise ValueError(f"deconv_init must be one of {DECONV_INITS}, got {deconv_init!r}")
        self.fusion = fusion
        if features is None:
            features = tv_vgg16(weights=None).features
        self.block1, self.block2, self.block3, self.block4, self.block5 = vgg_blocks(features)
        self.fc6 = conv_relu_drop(512, 4096, kernel=7, dropout=dropout)
        self.fc7 = conv_relu_drop(4096, 4096, kernel=1, dropout=dropout)
        channels = {"pool1": 64, "pool2": 128, "pool3": 256, "pool4": 512, "pool5": 512}
        channels["fc7"] = 4096
        self.score = nn.ModuleDict({t: nn.Conv2d(channels[t], n_out, 1) for t in TAPS})
        self.upsample = nn.ModuleDict({t: upsampler(n_out, f) for t, f in TAPS.items()})
        if deconv_init == "bilinear":
            with torch.no_grad():
                for t, f in TAPS.items():
                    self.upsample[t].weight.copy_(bilinear_kernel(n_out, f))
        self.fuse = nn.Conv2d(len(TAPS) * n_out, n_out, 1) if fusion == "concat" else None

    def forward(self, x: Tensor) -> Tensor:
        """Segment a batch.

        Args:
            x: Images, (N, in_channels, H, W), H and W multiples of 32, normalised with the
                ImageNet statistics when the backbone is pretrained.

        Returns:
            Logits, (N, n_out, H, W).

        Raises:
            ValueError: H or W is not a multiple of 32.
        """
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(
                f"VGG16FCN needs H and W divisible by 32 (five 2x2 poolings), got {h}x{w}; "
                "resize or pad the images (the paper uses 384x384)"
            )
        taps = {}
        taps["pool1"] = x = self.block1(x)  # (N,   64, H/2,  W/2)
        taps["pool2"] = x = self.block2(x)  # (N,  128, H/4,  W/4)
        taps["pool3"] = x = self.block3(x)  # (N,  256, H/8,  W/8)
        taps["pool4"] = x = self.block4(x)  # (N,  512, H/16, W/16)
        taps["pool5"] = x = self.block5(x)  # (N,  512, H/32, W/32)
        taps["fc7"] = self.fc7(self.fc6(x))  # (N, 4096, H/32, W/32)
        # One n_out-channel prediction map per tap, each brought back to (H, W).
        maps = [self.upsample[t](self.score[t](feature)) for t, feature in taps.items()]
        if self.fuse is None:  # FCN: element-wise sum
            return torch.stack(maps).sum(dim=0)
        return self.fuse(torch.cat(maps, dim=1))  # the paper: concatenate, then 1x1 conv


def vgg16_fcn_splitter(model: VGG16FCN) -> list[list[nn.Parameter]]:
    """Two parameter groups for fastai: the VGG16 convolutions (ImageNet weights) and every
    new layer (fc6, fc7, scores, deconvolutions, fuse). ``Learner.freeze()`` then trains the
    new layers only, and a ``slice`` of learning rates gives the backbone the smaller one."""
    blocks = (model.block1, model.block2, model.block3, model.block4, model.block5)
    backbone = [p for block in blocks for p in block.parameters()]
    in_backbone = {id(p) for p in backbone}
    return [backbone, [p for p in model.parameters() if id(p) not in in_backbone]]


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """conv1_1 for ``in_channels`` inputs. With ImageNet weights, as fastai does: one channel
    takes the sum of the RGB filters, two take R and G times 1.5, more keep RGB and start the
    extra channels at zero (so the network first sees the RGB image only)."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's
    nn.init.zeros_(new.bias)
    if pretrained:
        with torch.no_grad():
            old = conv.weight
            if in_channels == 1:
                new.weight.copy_(old.sum(dim=1, keepdim=True))
            elif in_channels == 2:
                new.weight.copy_(old[:, :2] * 1.5)
            else:
                new.weight.zero_()
                new.weight[:, :3] = old
            new.bias.copy_(conv.bias)
    return new


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@register("vgg16_fcn")
def vgg16_fcn(
    *,
    n_out: int = 2,
    pretrained: Pretrained = False,
    fusion: str = "concat",
    in_channels: int = 3,
    dropout: float = 0.5,
    deconv_init: str = "random",
) -> VGG16FCN:
    """Registry builder for :class:`VGG16FCN` (Qi et al. 2017).

    Args:
        n_out: Output classes (2 in the paper, for a softmax / cross-entropy loss).
        pretrained: ``True`` for torchvision's ImageNet VGG16 weights (downloaded on first use;
            offline a warning says so and the backbone starts from scratch), a path to a local
            copy of that file (``vgg16-397923af.pth``), or ``False`` for random weights. Only
            the 13 convolutions are kept; fc6 and fc7 are always new, as in the paper.
        fusion: ``"concat"`` (the paper) or ``"sum"`` (FCN's fusion, for comparison).
        in_channels: Input channels. Other than 3, conv1_1 is rebuilt (with ImageNet weights:
            RGB filters kept, extra channels starting at zero, as fastai does).
        dropout: Dropout probability after fc6 and fc7, in [0, 1).
        deconv_init: ``"random"`` (the paper) or ``"bilinear"`` (FCN's init).

    Shape:
        input (N, in_channels, H, W), H and W multiples of 32 -> output (N, n_out, H, W).

    Returns:
        The model, with ``model.splitter`` (:func:`vgg16_fcn_splitter`) and
        ``model.weights_source`` (a sentence saying where the backbone weights came from).

    Raises:
        ValueError: a bad value, or ``pretrained`` names a missing or invalid weights file.
    """
    _check_int("n_out", n_out)
    _check_int("in_channels", in_channels)
    if not isinstance(pretrained, (bool, str, Path)):
        raise ValueError(f"pretrained must be True, False or a path, got {pretrained!r}")
    if not isinstance(pretrained, bool) and not Path(pretrained).expanduser().is_file():
        raise ValueError(  # before building 138 M parameters (load_imagenet checks it too)
            f"pretrained={str(pretrained)!r}: no such file. Pass the path of torchvision's "
            "ImageNet VGG16 weights (vgg16-397923af.pth), True to download them, or False."
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if deconv_init not in DECONV_INITS:
        raise ValueError(f"deconv_init must be one of {DECONV_INITS}, got {deconv_init!r}")

    vgg = tv_vgg16(weights=None)
    source = load_imagenet(vgg, "vgg16", pretrained)
    features = vgg.features
    del vgg  # the classifier (fc6-fc8 as linear layers) is not used
    if in_channels != 3:
        loaded = source.startswith("ImageNet weights")  # see load_imagenet
        features[0] = _adapt_first_conv(features[0], in_channels, loaded)
        source += f"; conv1_1 rebuilt for {in_channels} input channels"
    model = VGG16FCN(
        n_out=n_out, fusion=fusion, dropout=dropout, deconv_init=deconv_init, features=features
    )
    model.splitter = vgg16_fcn_splitter
    model.weights_source = source
    return model
