"""ResNet34 U-Net (fastai ``DynamicUnet``), the model of paper 002.

Raghunath & Nofallah, "A Deep Fully Convolutional Network for Segmentation of Dermoscopic
Images" (ISIC 2018), Sec. 2.2: an ImageNet ResNet34 encoder cut at the adaptive pooling
layer, a U-Net-style decoder that copies and concatenates encoder activations, built with
fastai. ``DynamicUnet`` is exactly that decoder (pixel-shuffle upsampling, skip
connections), so the chapter uses fastai's own implementation.
"""

from __future__ import annotations

from pathlib import Path

from fastai.vision.learner import create_unet_model
from fastai.vision.models import resnet34
from torch import nn

from lessons_lib.models import register
from lessons_lib.models.pretrained import load_imagenet


def resnet_splitter(model: nn.Module) -> list:
    """Three parameter groups, as fastai splits a ResNet U-Net: early encoder layers,
    late encoder layers, decoder. Learning rates given as three values map onto these."""
    enc = model[0]
    groups = [nn.Sequential(*list(enc)[:6]), nn.Sequential(*list(enc)[6:]), model[1:]]
    return [list(g.parameters()) for g in groups]


@register("resnet34_unet")
def resnet34_unet(
    *,
    n_out: int = 1,
    img_size: tuple[int, int] = (512, 512),
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    self_attention: bool = False,
    blur: bool = False,
) -> nn.Module:
    """fastai ``DynamicUnet`` on a ResNet34 encoder.

    Args:
        n_out: Output channels (1 for BCEWithLogits, as paper 002).
        img_size: ``(H, W)`` used to size the decoder (any size works at run time).
        pretrained: ``True`` for torchvision's ImageNet weights (downloaded on first use;
            offline a warning says so and the encoder starts from scratch), a path to a
            local weights file, or ``False`` (:mod:`lessons_lib.models.pretrained`).
        in_channels: Input channels.
        self_attention: ``DynamicUnet``'s self-attention layer (off, as the paper).
        blur: ``DynamicUnet``'s blur after pixel shuffle (off, as the paper).

    Shape:
        input ``(N, in_channels, H, W)`` -> output ``(N, n_out, H, W)``.

    Returns:
        The model, with ``model.splitter`` (:func:`resnet_splitter`) and
        ``model.weights_source`` (a sentence saying where the encoder weights came from).
    """
    encoder = resnet34(weights=None)
    source = load_imagenet(encoder, "resnet34", pretrained)
    model = create_unet_model(
        lambda weights=None, pretrained=False: encoder,
        n_out,
        img_size,
        pretrained=False,
        n_in=in_channels,
        self_attention=self_attention,
        blur=blur,
    )
    model.splitter = resnet_splitter
    model.weights_source = source
    return model
