"""ResNet34 U-Net (fastai ``DynamicUnet``), the model of paper 002.

Raghunath & Nofallah, "A Deep Fully Convolutional Network for Segmentation of Dermoscopic
Images" (ISIC 2018), Sec. 2.2: an ImageNet ResNet34 encoder cut at the adaptive pooling
layer, a U-Net-style decoder that copies and concatenates encoder activations, built with
fastai. ``DynamicUnet`` is exactly that decoder (pixel-shuffle upsampling, skip
connections), so the chapter uses fastai's own implementation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from fastai.vision.learner import create_unet_model
from fastai.vision.models import resnet34
from torch import nn

from lessons_lib.models import register


def resnet_splitter(model: nn.Module) -> list:
    """Three parameter groups, as fastai splits a ResNet U-Net: early encoder layers,
    late encoder layers, decoder. Learning rates given as three values map onto these."""
    enc = model[0]
    groups = [nn.Sequential(*list(enc)[:6]), nn.Sequential(*list(enc)[6:]), model[1:]]
    return [list(g.parameters()) for g in groups]


def _encoder(pretrained: bool | str | Path) -> tuple[nn.Module, str]:
    """A torchvision ResNet34 and where its weights came from."""
    model = resnet34(weights=None)
    if isinstance(pretrained, (str, Path)):
        state = torch.load(pretrained, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return model, f"ImageNet weights from {pretrained}"
    if pretrained:
        from torchvision.models import ResNet34_Weights

        try:
            weights = ResNet34_Weights.IMAGENET1K_V1
            model.load_state_dict(weights.get_state_dict(progress=False))
            return model, "ImageNet weights (torchvision IMAGENET1K_V1)"
        except Exception as err:  # offline, proxy, corrupt download
            warnings.warn(
                f"could not load ImageNet weights ({type(err).__name__}: {err}); the encoder is "
                "trained from scratch. Pass pretrained=<path to resnet34 .pth> to use a local "
                "copy (torchvision's file resnet34-b627a593.pth).",
                stacklevel=3,
            )
    return model, "random initialisation (trained from scratch)"


@register("resnet34_unet")
def resnet34_unet(
    n_out: int = 1,
    img_size: tuple[int, int] = (512, 512),
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    **kwargs,
) -> nn.Module:
    """fastai ``DynamicUnet`` on a ResNet34 encoder.

    Args:
        n_out: Output channels (1 for BCEWithLogits, as paper 002).
        img_size: ``(H, W)`` used to size the decoder (any size works at run time).
        pretrained: ``True`` for torchvision's ImageNet weights (downloaded on first use;
            offline a warning says so and the encoder starts from scratch), a path to a
            local weights file, or ``False``.
        in_channels: Input channels.
        **kwargs: Passed to ``DynamicUnet`` (e.g. ``self_attention``, ``blur``).

    Shape:
        input ``(N, in_channels, H, W)`` -> output ``(N, n_out, H, W)``.

    Returns:
        The model, with ``model.splitter`` (:func:`resnet_splitter`) and
        ``model.weights_source`` (a sentence saying where the encoder weights came from).
    """
    encoder, source = _encoder(pretrained)
    model = create_unet_model(
        lambda weights=None, pretrained=False: encoder,
        n_out,
        img_size,
        pretrained=False,
        n_in=in_channels,
        **kwargs,
    )
    model.splitter = resnet_splitter
    model.weights_source = source
    return model
