"""lessons_lib.viz: every figure draws from plain inputs (the chapters run them end to end)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from lessons_lib.viz import (
    plot_histories,
    plot_history,
    plot_ja_distribution,
    plot_pair,
    show_channels,
    worst_cases,
)


def test_plot_histories_and_pair() -> None:
    h = pd.DataFrame(
        {
            "epoch": [0, 1],
            "train_loss": [0.9, 0.5],
            "valid_loss": [0.8, 0.6],
            "pooled_jaccard": [0.1, 0.3],
        }
    )
    fig = plot_histories({"fold0": h, "all": h})
    assert len(fig.axes) == 2
    a = pd.DataFrame({"jaccard": [0.1, 0.5, 0.9]}, index=["a", "b", "c"])
    b = pd.DataFrame({"jaccard": [0.2, 0.4, 0.95, 0.3]}, index=["a", "b", "c", "d"])
    fig, r = plot_pair(a, b, ("one", "two"))
    assert r == pytest.approx(np.corrcoef([0.1, 0.5, 0.9], [0.2, 0.4, 0.95])[0, 1])
    assert len(fig.axes[0].collections[0].get_offsets()) == 3  # only the shared images
    _, r = plot_pair(a, a.assign(jaccard=1.0), ("one", "const"))
    assert np.isnan(r)


def test_history_marks_stage_boundaries() -> None:
    h = pd.DataFrame(
        {
            "stage": ["a", "a", "b"],
            "epoch": [0, 1, 0],
            "train_loss": [0.9, 0.5, 0.4],
            "valid_loss": [0.8, 0.6, 0.5],
            "pooled_jaccard": [0.1, 0.3, 0.4],
        }
    )
    fig = plot_history(h)
    boundaries = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]
    assert len(boundaries) == 1 and boundaries[0].get_xdata()[0] == 2.5


def test_ja_distribution_draws_the_cut_off() -> None:
    scores = {"x": pd.DataFrame({"jaccard": [0.2, 0.7, 0.9]})}
    fig = plot_ja_distribution(scores)
    cut = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert cut and cut[0].get_xdata()[0] == 0.65


def test_worst_cases_are_the_lowest() -> None:
    frame = pd.DataFrame({"jaccard": [0.5, 0.1, 0.9, 0.3]}, index=list("abcd"))
    assert worst_cases(frame, k=2) == ["b", "d"]


def test_show_channels_draws_eight_columns() -> None:
    fig = show_channels(torch.rand(3, 12, 16))
    assert len(fig.axes) == 16
