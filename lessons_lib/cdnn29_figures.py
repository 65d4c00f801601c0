"""The CDNN-29 chapter's figures and bookkeeping (paper 001, Yuan and Lo).

The paper's Fig. 1 (:func:`show_channels`), learning curves of the ensemble members
(:func:`plot_fold_histories`, cf. Fig. 2), the per-image scatter of Fig. 5
(:func:`plot_ja_scatter`) and the cost of a training step (:func:`training_flops`).
:mod:`lessons_lib.cdnn29` describes them and re-exports them beside the chapter's augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

__all__ = [
    "CHANNEL_NAMES",
    "plot_fold_histories",
    "plot_ja_scatter",
    "show_channels",
    "training_flops",
]

CHANNEL_NAMES = ("R", "G", "B", "H", "S", "V", "L")


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
