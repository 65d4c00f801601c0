"""What the CDNN-29 chapter (paper 001) needs beyond the shared library: augmentation and figures.

Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image Segmentation with Enhanced
Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health Inform., 2019 (arXiv:1709.09780).

* :func:`geometric_augment`: Section III-B's first augmentation, "a series of geometric
  transformations, including randomly flipping, shifting, rotating as well as scaling", as one
  fastai affine batch transform (a single interpolation per image). fastai's ``aug_transforms``
  flips only horizontally (its vertical option adds 90-degree turns, which do not suit 3:4
  images) and shifts only together with zooming, so :class:`FlipVert` and :class:`Shift` add a
  vertical flip and a translation; all are composed into fastai's ``Flip``.
* :func:`show_channels`: the seven input channels of an image and their [5, 95] percentile
  contrast normalisation (the paper's Fig. 1).
* :func:`training_flops`: floating-point operations of one training step per image, counted on
  PyTorch's ``meta`` device (no memory, no compute), for the chapter's cost estimate.
* :func:`kept_epoch`: which epoch :func:`lessons_lib.training.fit_stage` kept.
* :func:`plot_fold_histories`: learning curves of all ensemble members in one figure (the
  paper's Fig. 2 plots training and validation loss).
* :func:`plot_ja_scatter`: per-image Jaccard of two methods against each other (the paper's
  Fig. 5), with their Pearson correlation.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from fastai.vision.augment import (
    AffineCoordTfm,
    PadMode,
    _draw_mask,
    affine_mat,
    aug_transforms,
    setup_aug_tfms,
)
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

__all__ = [
    "FlipVert",
    "Shift",
    "geometric_augment",
    "kept_epoch",
    "plot_fold_histories",
    "plot_ja_scatter",
    "shift_mat",
    "show_channels",
    "training_flops",
    "vflip_mat",
]

CHANNEL_NAMES = ("R", "G", "B", "H", "S", "V", "L")


def vflip_mat(x: Tensor, p: float = 0.5, draw=None, batch: bool = False) -> Tensor:
    """Random vertical-flip affine matrices (fastai's ``flip_mat`` flips horizontally).

    Args:
        x: The batch (only its size, dtype and device are used).
        p: Probability that an image is flipped.
        draw: fastai-style custom draw (1 flips, 0 does not), for tests.
        batch: One draw for the whole batch.

    Shape:
        (N, ...) -> (N, 3, 3).
    """
    sign = x.new_ones(x.size(0)) - 2 * _draw_mask(
        x, lambda x: x.new_ones(x.size(0)), draw=draw, p=p, batch=batch
    )
    one, zero = x.new_ones(x.size(0)), x.new_zeros(x.size(0))
    return affine_mat(one, zero, zero, zero, sign, zero)


def shift_mat(
    x: Tensor,
    max_shift: float = 0.1,
    p: float = 0.5,
    draw_x=None,
    draw_y=None,
    batch: bool = False,
) -> Tensor:
    """Random translation matrices, uniform in ``[-max_shift, max_shift]`` of the width/height.

    Args:
        x: The batch (only its size, dtype and device are used).
        max_shift: Largest shift, as a fraction of the image width (x) and height (y).
        p: Probability that an image is shifted.
        draw_x: fastai-style custom horizontal shift (fraction of the width), for tests.
        draw_y: Same, vertical (fraction of the height).
        batch: One draw for the whole batch.

    Shape:
        (N, ...) -> (N, 3, 3).
    """

    def _draw(x: Tensor) -> Tensor:
        return x.new_empty(x.size(0)).uniform_(-max_shift, max_shift)

    # fastai's sampling grid spans [-1, 1]: a shift of a fraction f of the side is 2 f.
    tx = 2 * _draw_mask(x, _draw, draw=draw_x, p=p, batch=batch)
    ty = 2 * _draw_mask(x, _draw, draw=draw_y, p=p, batch=batch)
    one, zero = x.new_ones(x.size(0)), x.new_zeros(x.size(0))
    # The matrix maps output coordinates to input ones: sampling at -t moves the content by +t.
    return affine_mat(one, zero, -tx, zero, one, -ty)


class FlipVert(AffineCoordTfm):
    """Random vertical flip (training only), a fastai affine batch transform.

    Args:
        p: Probability per image.
        draw: Custom draw, for tests.
        pad_mode: fastai padding mode.
    """

    def __init__(self, p: float = 0.5, draw=None, pad_mode=PadMode.Reflection) -> None:
        super().__init__(partial(vflip_mat, p=p, draw=draw), pad_mode=pad_mode, align_corners=True)


class Shift(AffineCoordTfm):
    """Random translation (training only), a fastai affine batch transform.

    Args:
        max_shift: Largest shift as a fraction of the width and height.
        p: Probability per image.
        draw_x: Custom horizontal shift, for tests.
        draw_y: Custom vertical shift, for tests.
        pad_mode: fastai padding mode (reflection, as fastai's own affine transforms).
    """

    def __init__(
        self,
        max_shift: float = 0.1,
        p: float = 0.5,
        draw_x=None,
        draw_y=None,
        pad_mode=PadMode.Reflection,
    ) -> None:
        super().__init__(
            partial(shift_mat, max_shift=max_shift, p=p, draw_x=draw_x, draw_y=draw_y),
            pad_mode=pad_mode,
            align_corners=True,
        )


def geometric_augment(
    max_rotate: float = 15.0,
    min_zoom: float = 0.9,
    max_zoom: float = 1.1,
    max_shift: float = 0.1,
    p_affine: float = 0.75,
) -> list:
    """The paper's geometric augmentation: flips, shift, rotation and scaling, one interpolation.

    Horizontal and vertical flips (each p = 0.5), then with probability ``p_affine`` each: a
    rotation in ``[-max_rotate, max_rotate]`` degrees, a scaling in ``[min_zoom, max_zoom]``
    (fastai's ``Zoom``, which also moves the centre) and a shift of up to ``max_shift`` of the
    side. No warp and no lighting change (the paper's photometric augmentation is the channel
    contrast of :class:`lessons_lib.transforms.RandomChannelContrast`). Reflection padding.

    Returns:
        fastai batch transforms (one composed affine transform) for ``segmentation_dls(aug=...)``.
    """
    base = aug_transforms(
        do_flip=True,
        flip_vert=False,
        max_rotate=max_rotate,
        min_zoom=min_zoom,
        max_zoom=max_zoom,
        max_lighting=0.0,
        max_warp=0.0,
        p_affine=p_affine,
    )
    extra = [FlipVert(p=0.5)]
    if max_shift > 0:
        extra.append(Shift(max_shift, p=p_affine))
    return setup_aug_tfms(list(base) + extra)


def show_channels(rgb: Tensor, low: float = 5.0, high: float = 95.0):
    """The paper's Fig. 1: an image's seven input channels, as they are and contrast-normalised.

    Args:
        rgb: One RGB image, float in [0, 1], shape (3, H, W).
        low: Lower percentile of the normalisation window (5 in Fig. 1).
        high: Upper percentile (95 in Fig. 1).

    Returns:
        The figure: top row the image and its R, G, B, H, S, V, L channels; bottom row each
        channel stretched to its [low, high] percentile window, and the RGB image rebuilt from
        the stretched R, G, B.
    """
    from lessons_lib.transforms import percentile_stretch, rgb_to_cdnn7

    seven = rgb_to_cdnn7(rgb.float()[None])[0]
    stretched = percentile_stretch(seven, low, high)
    fig, axes = plt.subplots(2, 8, figsize=(16, 4.2))
    for row, channels in enumerate((seven, stretched)):
        axes[row, 0].imshow(channels[:3].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[row, 0].set_title("RGB" if row == 0 else f"RGB, [{low:g}, {high:g}] window")
        for i, name in enumerate(CHANNEL_NAMES):
            axes[row, i + 1].imshow(channels[i].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, i + 1].set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("The seven input channels (top) and each normalised to a percentile window")
    fig.tight_layout()
    return fig


def training_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward and backward pass (multiply-add = 2).

    Counted with ``torch.utils.flop_counter`` on a copy of ``model`` on the ``meta`` device, so
    nothing is computed or allocated: instant even at the paper's input size on a CPU.

    Args:
        model: The network (not modified).
        shape: Input shape, e.g. ``(1, 7, 192, 256)``.

    Returns:
        FLOPs of the batch (convolutions and matrix products; element-wise work not counted).
    """
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").train()
    x = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        meta(x).sum().backward()
    return int(counter.get_total_flops())


def kept_epoch(history: pd.DataFrame, monitor: str = "train_loss") -> int:
    """The epoch ``fit_stage`` kept: the best ``monitor`` value (lowest for losses).

    Args:
        history: The stage's rows of ``history.csv`` (``fit_stage``'s return value).
        monitor: The monitored column.
    """
    column = history[monitor].astype(float)
    best = column.idxmin() if "loss" in monitor else column.idxmax()
    return int(history.loc[best, "epoch"])


def plot_fold_histories(histories: Mapping[str, pd.DataFrame], metric: str = "pooled_jaccard"):
    """Training and validation loss, and a validation metric, of several models, by epoch.

    Args:
        histories: ``{label: history}`` (columns ``epoch, train_loss, valid_loss, <metric>``).
        metric: Validation metric of the right panel.

    Returns:
        The matplotlib figure: solid lines training loss, dashed validation loss, one colour per
        model.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        x = np.arange(1, len(h) + 1)
        axes[0].plot(x, h["train_loss"], "-", color=color, label=f"{label} train")
        axes[0].plot(x, h["valid_loss"], "--", color=color, label=f"{label} valid")
        if metric in h:
            axes[1].plot(x, h[metric], "o-", color=color, ms=3, label=label)
    axes[0].set_ylabel("Jaccard distance (loss)")
    axes[1].set_ylabel(f"validation {metric}")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Learning curves of the ensemble members (solid: training, dashed: validation)")
    fig.tight_layout()
    return fig


def plot_ja_scatter(
    x: pd.DataFrame, y: pd.DataFrame, x_label: str, y_label: str, column: str = "jaccard"
):
    """Per-image scores of two methods on the same images, one point per image (paper Fig. 5).

    Args:
        x: Per-image scores (index: image id) of the first method.
        y: The same for the second method.
        x_label: Axis label of the first method.
        y_label: Axis label of the second.
        column: Score to compare.

    Returns:
        ``(figure, r)``: the scatter plot with the diagonal, and the Pearson correlation of the
        two methods' scores (NaN if either is constant).
    """
    both = pd.concat([x[column].rename("x"), y[column].rename("y")], axis=1, join="inner")
    if both["x"].nunique() > 1 and both["y"].nunique() > 1:
        r = float(np.corrcoef(both["x"], both["y"])[0, 1])
    else:
        r = float("nan")
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.scatter(both["x"], both["y"], s=14, alpha=0.7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{column} ({x_label})")
    ax.set_ylabel(f"{column} ({y_label})")
    ax.set_title(f"{len(both)} images, Pearson r = {r:.3f}", fontsize=9)
    fig.tight_layout()
    return fig, r
