"""Figures the chapters and the leaderboard show: learning curves, contour overlays like the
papers', per-image score distributions and per-image comparisons of two methods, input channels.

Each figure exists once here; a chapter saves it with ``run.savefig``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from PIL import Image
from skimage.measure import find_contours
from torch import Tensor

from lessons_lib.data.io import read_mask
from lessons_lib.data.prepare import PreparedData
from lessons_lib.metrics import JACCARD_THRESHOLD
from lessons_lib.metrics import METRIC_LABELS as LABELS
from lessons_lib.transforms.colour import CHANNEL_NAMES, rgb_to_cdnn7
from lessons_lib.transforms.contrast import percentile_stretch

TRUTH, PRED = "#00e000", "#ff2020"


def plot_history(history: pd.DataFrame, metrics: Sequence[str] = ("pooled_dice", "pooled_jaccard")):
    """Training and validation loss, and validation metrics, over all stages' epochs.

    Args:
        history: ``history.csv`` of a run (columns ``stage, epoch, train_loss, valid_loss``
            and metric columns).
        metrics: Metric columns to plot when present.

    Returns:
        The matplotlib figure.
    """
    h = history.reset_index(drop=True)
    x = np.arange(1, len(h) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].plot(x, h["train_loss"], "o-", label="train loss")
    axes[0].plot(x, h["valid_loss"], "o-", label="valid loss")
    for m in metrics:
        if m in h:
            axes[1].plot(x, h[m], "o-", label=f"valid {m}")
    for ax in axes:
        for i in np.flatnonzero(h["stage"].ne(h["stage"].shift()).to_numpy())[1:]:
            ax.axvline(i + 0.5, color="grey", ls=":")
        ax.set_xlabel("epoch (all stages)")
        ax.legend()
    axes[0].set_yscale("log")
    stages = " -> ".join(dict.fromkeys(h["stage"]))
    fig.suptitle(f"Learning curves ({stages})")
    fig.tight_layout()
    return fig


def plot_histories(
    histories: Mapping[str, pd.DataFrame],
    metric: str = "pooled_jaccard",
    loss: str = "loss",
    title: str = "Learning curves (solid: training, dashed: validation)",
):
    """Training and validation loss, and a validation metric, of several models (folds, ensemble
    members, ablations), by epoch.

    Args:
        histories: ``{label: history}`` (columns ``epoch, train_loss, valid_loss, <metric>``).
        metric: Validation metric of the right panel.
        loss: Name of the loss, for the axis label.
        title: Figure title.

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
    axes[0].set_ylabel(loss)
    axes[1].set_ylabel(f"validation {metric}")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _contour(ax, mask: np.ndarray, color: str) -> None:
    for c in find_contours(mask.astype(float), 0.5):
        ax.plot(c[:, 1], c[:, 0], color=color, lw=1.5)


def show_overlays(
    data: PreparedData,
    split: str,
    ids: Sequence[str],
    probs: Mapping[str, np.ndarray],
    per_image: pd.DataFrame | None = None,
    threshold: float = 0.5,
    cols: int = 4,
    title: str = "",
):
    """Images with the true (green) and predicted (red) lesion contours.

    Args:
        data: Prepared dataset (display images come from its cache).
        split: Split of ``ids``.
        ids: Image ids to show.
        probs: Probability thumbnails by id (from :func:`lessons_lib.evaluation.evaluate`).
        per_image: Per-image scores; the Jaccard is shown in each title.
        threshold: Probability threshold of the drawn prediction.
        cols: Columns of the grid.
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    entries = {e["id"]: e for e in data.entries(split)}
    rows = max(1, int(np.ceil(len(ids) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, ids, strict=False):
        e = entries[i]
        image = Image.open(data.path / e["image"])
        prob = np.asarray(probs[i], dtype=np.float32)
        size = (prob.shape[1], prob.shape[0])
        truth = Image.fromarray(read_mask(data.path / e["mask"]))
        truth = np.asarray(truth.resize(size, Image.NEAREST))
        ax.imshow(np.asarray(image.resize(size)))
        _contour(ax, truth, TRUTH)
        _contour(ax, prob > threshold, PRED)
        ja = f" JA {per_image.loc[i, 'jaccard']:.2f}" if per_image is not None else ""
        ax.set_title(f"{i}{ja}", fontsize=8)
    fig.suptitle(title or "truth (green) and prediction (red)")
    fig.tight_layout()
    return fig


def worst_cases(per_image: pd.DataFrame, k: int = 4, by: str = "jaccard") -> list[str]:
    """Ids of the ``k`` images with the lowest ``by`` score."""
    return list(per_image.sort_values(by).index[:k])


def plot_ja_distribution(
    scores: Mapping[str, pd.DataFrame],
    metric: str = "jaccard",
    threshold: float = JACCARD_THRESHOLD,
):
    """Per-image ``metric`` of one or more evaluations: a box plot with every image as a dot,
    and the thresholded-Jaccard cut-off (an image left of it counts 0 in ISIC 2018's score).

    Args:
        scores: ``{label: per-image DataFrame}`` (a column ``metric``).
        metric: Score to show.
        threshold: The cut-off drawn as a line.

    Returns:
        The matplotlib figure.
    """
    names = list(scores)
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.45 * max(len(names), 1)))
    data = [scores[n][metric].dropna().to_numpy() for n in names]
    horizontal = (
        {"orientation": "horizontal"}
        if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
        else {"vert": False}
    )
    ax.boxplot(data, widths=0.6, showfliers=False, **horizontal)
    rng = np.random.default_rng(0)
    for k, values in enumerate(data, start=1):
        ax.plot(values, k + rng.uniform(-0.15, 0.15, len(values)), ".", alpha=0.5, ms=4)
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"{threshold} (thresholded JA cut-off)")
    ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"per-image {LABELS.get(metric, metric)}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_pair(
    a: pd.DataFrame,
    b: pd.DataFrame,
    names: Sequence[str] = ("a", "b"),
    metric: str = "jaccard",
    threshold: float = JACCARD_THRESHOLD,
    annotate: int = 3,
):
    """Per-image scores of two methods on the images they share, one dot per image (CDNN-29's
    Fig. 5), with the diagonal, the thresholded-Jaccard cut-offs and the worst images labelled.

    Args:
        a: Per-image scores (index: image id) of the first method.
        b: The same for the second method.
        names: Axis labels of the two methods.
        metric: Score to compare.
        threshold: Cut-off drawn on both axes.
        annotate: How many of the worst images (lowest of the two scores) to label.

    Returns:
        ``(figure, r)``: the scatter plot and the Pearson correlation of the two methods'
        scores (NaN if either is constant or fewer than two images are shared).
    """
    both = pd.concat([a[metric].rename("a"), b[metric].rename("b")], axis=1, join="inner")
    r = float("nan")
    if len(both) > 1 and both["a"].nunique() > 1 and both["b"].nunique() > 1:
        r = float(np.corrcoef(both["a"], both["b"])[0, 1])
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1)
    ax.axvline(threshold, color="k", ls=":", lw=1)
    ax.axhline(threshold, color="k", ls=":", lw=1)
    ax.scatter(both["a"], both["b"], s=14, alpha=0.7)
    for image_id in both.min(axis=1).sort_values().index[:annotate]:
        ax.annotate(str(image_id), (both.loc[image_id, "a"], both.loc[image_id, "b"]), fontsize=7)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    label = LABELS.get(metric, metric)
    ax.set_xlabel(f"{label}: {names[0]}", fontsize=8)
    ax.set_ylabel(f"{label}: {names[1]}", fontsize=8)
    ax.set_title(f"{len(both)} images, Pearson r = {r:.3f}", fontsize=9)
    fig.tight_layout()
    return fig, r


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
