"""Figures every chapter shows: learning curves, overlays like the papers', worst cases.

Introduced by the fastai ResNet34 U-Net chapter (paper 002).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from skimage.measure import find_contours

from lessons_lib.data.prepare import PreparedData

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
        probs: Probability thumbnails by id (from :func:`lessons_lib.evaluate.evaluate`).
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
        truth = np.asarray(Image.open(data.path / e["mask"]).resize(size, Image.NEAREST)) > 127
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


def plot_ja_distribution(per_image: Mapping[str, pd.DataFrame], threshold: float = 0.65):
    """Histogram of per-image Jaccard for one or more evaluations, with the 0.65 cut-off.

    Args:
        per_image: ``{label: per-image DataFrame}``.
        threshold: The ISIC 2018 thresholded-Jaccard cut-off, drawn as a line.
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 1, 21)
    for label, frame in per_image.items():
        ax.hist(frame["jaccard"], bins=bins, alpha=0.6, label=label)
    ax.axvline(threshold, color="k", ls="--", label=f"JA = {threshold} (counts 0 below)")
    ax.set_xlabel("per-image Jaccard")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    return fig
