"""Every chapter run in one table, beside the papers' numbers (the book's Leaderboard chapter).

A chapter run (:class:`lessons_lib.chapter.Run`) leaves ``metrics.json`` and one
``per_image_<evaluation>.csv`` per evaluation in ``<runs>/<chapter>/<profile>-<dataset>/``.
This module reads whatever runs exist, smoke or full:

* :func:`collect_runs`: one row per (run, evaluation) with the metric means, image count,
  wall time, parameter count and a settings summary; missing or corrupt files are skipped with
  a warning that names them.
* :func:`leaderboard_table` and :func:`reported_table`: the book's tables (ours, and ours beside
  the paper's reported numbers).
* :func:`load_per_image`, :func:`paired_scores`, :func:`best_pair`: per-image scores, and two
  evaluations' scores on the images they share (for a per-image scatter as in CDNN's Fig. 5).
* :func:`headline`: each run's evaluations that the paper reported numbers for.
* :func:`plot_distributions`, :func:`plot_pair`, :func:`worst_table`: the figures and the worst
  cases.

Reading the runs (:func:`collect_runs` and its helpers) lives in
:mod:`lessons_lib.leaderboard_runs`; every name above is importable from this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lessons_lib.leaderboard_runs import (
    LABELS,
    METRICS,
    THRESHOLD,
    RunWarning,
    _warn,
    collect_runs,
    data_identity,
    filter_runs,
    headline,
    labels,
    read_metrics,
)

__all__ = [
    "LABELS",
    "METRICS",
    "THRESHOLD",
    "RunWarning",
    "best_pair",
    "collect_runs",
    "data_identity",
    "filter_runs",
    "headline",
    "labels",
    "leaderboard_table",
    "load_per_image",
    "paired_scores",
    "per_image_scores",
    "plot_distributions",
    "plot_pair",
    "read_metrics",
    "reported_table",
    "worst_table",
]


def leaderboard_table(runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The book's main table: our scores, best mean JA first, with cost and parameters."""
    table = runs.assign(
        parameters=runs["n_parameters"].map(lambda n: "" if pd.isna(n) else f"{int(n):,}"),
        run_time=runs["wall_time_s"].map(_duration),
    )
    table = table.sort_values(["dataset", "jaccard"], ascending=[True, False])
    columns = ["method", "dataset", "split", "profile", *METRICS[:6], "n_images"]
    table = table[[*columns, "parameters", "run_time"]].rename(
        columns={**LABELS, "n_images": "images", "run_time": "run time"}
    )
    return table.round(digits).reset_index(drop=True)


def reported_table(runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Our scores beside each paper's reported numbers, one row per reported metric.

    Columns ``method, dataset, split, profile, metric, paper, ours, ours - paper``; only
    metrics the paper reported for that evaluation (``run.add_result(..., reported=...)``).
    """
    rows = []
    for _, r in runs.iterrows():
        for metric, value in r["reported"].items():
            if not isinstance(value, int | float):
                continue
            ours = r.get(metric, np.nan)
            rows.append(
                {
                    "method": r["method"],
                    "dataset": r["dataset"],
                    "split": r["split"],
                    "profile": r["profile"],
                    "metric": LABELS.get(metric, metric),
                    "paper": float(value),
                    "ours": ours,
                    "ours - paper": ours - float(value),
                }
            )
    columns = ["method", "dataset", "split", "profile", "metric", "paper", "ours", "ours - paper"]
    return pd.DataFrame(rows, columns=columns).round(digits)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or pd.isna(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def load_per_image(row: Mapping[str, Any]) -> pd.DataFrame | None:
    """One evaluation's per-image scores (``per_image_<evaluation>.csv``), indexed by image id.

    Returns ``None`` (with a :class:`RunWarning`) when the file is missing or unreadable.
    """
    path = Path(row["run"]) / f"per_image_{row['evaluation']}.csv"
    try:
        frame = pd.read_csv(path, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        _warn(path, f"per-image scores unreadable ({exc.__class__.__name__}: {exc})")
        return None
    if "jaccard" not in frame.columns:
        _warn(path, "no 'jaccard' column")
        return None
    frame.index = frame.index.astype(str)
    frame.index.name = "image_id"
    return frame


def per_image_scores(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{label: per-image scores}`` for every row whose per-image CSV can be read."""
    scores = {}
    for label, (_, row) in zip(labels(runs), runs.iterrows(), strict=True):
        frame = load_per_image(row)
        if frame is not None:
            scores[label] = frame
    return scores


def paired_scores(
    a: pd.DataFrame, b: pd.DataFrame, metric: str = "jaccard", names: Sequence[str] = ("a", "b")
) -> pd.DataFrame:
    """Two evaluations' ``metric`` on the image ids they share (columns ``names``)."""
    common = a.index.intersection(b.index)
    return pd.DataFrame(
        {names[0]: a.loc[common, metric], names[1]: b.loc[common, metric]}, index=common
    )


def best_pair(runs: pd.DataFrame, min_common: int = 2) -> tuple[int, int, int] | None:
    """The two evaluations of *different methods* on the same data sharing the most images.

    Returns ``(row_a, row_b, n_common)`` (positional indices into ``runs``) or ``None``.
    Evaluations of different data (:func:`data_identity`) are never paired: their image ids
    may coincide without naming the same images.
    """
    ids = {}
    for i, (_, row) in enumerate(runs.iterrows()):
        frame = load_per_image(row)
        if frame is not None:
            ids[i] = set(frame.index)
    best = None
    items = list(ids.items())
    for x, (i, ids_i) in enumerate(items):
        for j, ids_j in items[x + 1 :]:
            ri, rj = runs.iloc[i], runs.iloc[j]
            if ri["method"] == rj["method"] or ri["data"] != rj["data"]:
                continue
            n = len(ids_i & ids_j)
            if n >= min_common and (best is None or n > best[2]):
                best = (i, j, n)
    return best


def plot_distributions(
    scores: Mapping[str, pd.DataFrame], metric: str = "jaccard", threshold: float = THRESHOLD
):
    """Per-image ``metric`` of each evaluation: a box plot with every image as a dot."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(names), 1)))
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


def plot_pair(pair: pd.DataFrame, threshold: float = THRESHOLD, annotate: int = 3):
    """Per-image scatter of two evaluations (CDNN's Fig. 5), the worst images labelled."""
    a, b = pair.columns[:2]
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1)
    ax.axvline(threshold, color="k", ls=":", lw=1)
    ax.axhline(threshold, color="k", ls=":", lw=1)
    ax.scatter(pair[a], pair[b], s=14, alpha=0.7)
    for image_id in pair.min(axis=1).sort_values().index[:annotate]:
        ax.annotate(str(image_id), (pair.loc[image_id, a], pair.loc[image_id, b]), fontsize=7)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    ax.set_xlabel(f"JA: {a}", fontsize=8)
    ax.set_ylabel(f"JA: {b}", fontsize=8)
    fig.tight_layout()
    return fig


def worst_table(scores: Mapping[str, pd.DataFrame], k: int = 3, metric: str = "jaccard"):
    """The ``k`` lowest-``metric`` images of each evaluation, one row each."""
    rows = []
    for label, frame in scores.items():
        for rank, (image_id, row) in enumerate(frame.nsmallest(k, metric).iterrows(), start=1):
            rows.append(
                {
                    "evaluation": label,
                    "rank": rank,
                    "image_id": image_id,
                    **{LABELS.get(m, m): row[m] for m in METRICS if m in frame.columns},
                }
            )
    return pd.DataFrame(rows)
