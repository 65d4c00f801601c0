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
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

METRICS = (
    "jaccard",
    "threshold_jaccard",
    "dice",
    "accuracy",
    "sensitivity",
    "specificity",
    "pooled_jaccard",
)
LABELS = {
    "jaccard": "JA",
    "threshold_jaccard": "thresholded JA",
    "dice": "Dice",
    "accuracy": "AC",
    "sensitivity": "SE",
    "specificity": "SP",
    "pooled_jaccard": "pooled JA",
}
# Parameters left out of the settings summary: paths and bookkeeping, not the method.
_NOT_SETTINGS = {"profile", "dataset", "data_dir", "out_dir", "workers"}
# Keys under which a run may record its model's trainable parameter count.
_PARAM_COUNT_KEYS = ("n_parameters", "parameters", "n_params", "trainable_parameters")
THRESHOLD = 0.65  # ISIC 2018: an image's JA below this counts as 0


class RunWarning(UserWarning):
    """A run folder that could not be read (the message names the file)."""


def _warn(path: Path, why: str) -> None:
    warnings.warn(f"skipping {path}: {why}", RunWarning, stacklevel=3)


def _settings(params: Mapping[str, Any]) -> str:
    """A short ``key=value`` summary of a run's method settings."""
    parts = []
    for key, value in params.items():
        if key in _NOT_SETTINGS or value is None:
            continue
        text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
        parts.append(f"{key}={text if len(text) <= 40 else text[:37] + '...'}")
    return ", ".join(parts)


def _param_count(record: Mapping[str, Any], result: Mapping[str, Any]) -> float:
    for source in (result, record):
        for key in _PARAM_COUNT_KEYS:
            value = source.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
    return np.nan


def data_identity(record: Mapping[str, Any]) -> str:
    """Which images a run used, so that per-image scores are only paired on the same images.

    Real datasets are identified by name (an image id means the same image everywhere). The
    synthetic data is generated per chapter, so its identity also includes the generator's
    settings: every parameter whose name contains ``synth``, and ``seed``. A run may state its
    own identity as ``data_identity`` in ``metrics.json``.
    """
    if record.get("data_identity"):
        return str(record["data_identity"])
    dataset = str(record.get("dataset"))
    if dataset != "synthetic":
        return dataset
    params = record.get("params") or {}
    keys = sorted(k for k in params if "synth" in k or k == "seed")
    return "synthetic(" + ", ".join(f"{k}={json.dumps(params[k])}" for k in keys) + ")"


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check one ``metrics.json``; raise ``ValueError`` saying what is wrong."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not isinstance(record.get("results"), list):
        raise ValueError("no 'results' list")
    return record


def collect_runs(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every evaluation of every run under ``runs_dir``, one row each.

    Args:
        runs_dir: Folder searched recursively for ``metrics.json``; default
            :func:`lessons_lib.chapter.runs_dir` (``$LESSONS_RUNS`` or ``<repository>/runs``).

    Returns:
        Columns ``method`` (the result's or the run's ``method``, else the chapter),
        ``chapter, paper, dataset, evaluation, split, profile``, the :data:`METRICS`,
        ``n_images``, ``reported`` (the paper's numbers, a dict), ``n_parameters`` (NaN unless
        the run recorded it as ``n_parameters`` or ``parameters``, e.g. with
        ``run.finish(n_parameters=...)``),
        ``wall_time_s``, ``device``, ``finished``, ``settings`` (a summary of the parameters),
        ``data`` (:func:`data_identity`) and ``run`` (the run folder). A missing, unreadable or
        malformed ``metrics.json`` (or result) is skipped with a :class:`RunWarning` naming it.
    """
    if runs_dir is None:
        from lessons_lib.chapter import runs_dir as default_runs_dir

        runs_dir = default_runs_dir()
    runs_dir = Path(runs_dir)
    rows = []
    paths = sorted(runs_dir.rglob("metrics.json")) if runs_dir.is_dir() else []
    for path in paths:
        if any(part.startswith(".") for part in path.relative_to(runs_dir).parts):
            continue  # .ipynb_checkpoints and the like
        try:
            record = read_metrics(path)
        except ValueError as exc:
            _warn(path, str(exc))
            continue
        params = record.get("params") if isinstance(record.get("params"), dict) else {}
        env = record.get("environment") if isinstance(record.get("environment"), dict) else {}
        chapter = record.get("chapter") or path.parent.parent.name
        for i, result in enumerate(record["results"]):
            if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
                _warn(path, f"result {i} has no 'metrics'")
                continue
            metrics = result["metrics"]
            row = {
                "method": result.get("method") or record.get("method") or chapter,
                "chapter": chapter,
                "paper": record.get("paper"),
                "dataset": record.get("dataset") or params.get("dataset"),
                "evaluation": result.get("name", f"result{i}"),
                "split": result.get("split", ""),
                "profile": record.get("profile") or params.get("profile"),
            }
            for metric in METRICS:
                value = metrics.get(metric)
                row[metric] = float(value) if isinstance(value, int | float) else np.nan
            row.update(
                n_images=metrics.get("n_images"),
                reported=dict(result.get("reported") or {}),
                n_parameters=_param_count(record, result),
                wall_time_s=record.get("wall_time_s"),
                device=env.get("gpu") or env.get("device"),
                finished=record.get("finished"),
                settings=_settings(params),
                data=data_identity(record),
                run=path.parent,
            )
            rows.append(row)
    columns = [
        "method",
        "chapter",
        "paper",
        "dataset",
        "evaluation",
        "split",
        "profile",
        *METRICS,
        "n_images",
        "reported",
        "n_parameters",
        "wall_time_s",
        "device",
        "finished",
        "settings",
        "data",
        "run",
    ]
    return pd.DataFrame(rows, columns=columns)


def filter_runs(runs: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    """Rows whose columns equal the given values; ``None`` values do not filter."""
    keep = np.ones(len(runs), bool)
    for column, value in equal.items():
        if value is not None:
            keep &= (runs[column] == value).to_numpy()
    return runs[keep]


def headline(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's headline evaluations: those the paper reported numbers for.

    A run without any (e.g. a chapter whose paper reports none) keeps all its evaluations.
    """
    if runs.empty:
        return runs
    has_reported = runs["reported"].map(bool)
    run_has_any = has_reported.groupby(runs["run"]).transform("any")
    return runs[has_reported | ~run_has_any]


def labels(runs: pd.DataFrame) -> pd.Series:
    """A unique, readable label per row: ``method | dataset | evaluation | profile``."""
    base = runs["method"].astype(str) + " | " + runs["dataset"].astype(str)
    base = base + " | " + runs["evaluation"].astype(str) + " | " + runs["profile"].astype(str)
    duplicated = base.duplicated(keep=False)
    number = " #" + (base.groupby(base).cumcount() + 1).astype(str)
    return base.where(~duplicated, base + number)


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
