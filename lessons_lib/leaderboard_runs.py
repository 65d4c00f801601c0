"""Reading chapter runs for the Leaderboard: every evaluation of every run, one row each.

A chapter run (:class:`lessons_lib.chapter.Run`) leaves ``metrics.json`` in
``<runs>/<chapter>/<profile>-<dataset>/``. :func:`collect_runs` reads whatever runs exist,
skipping missing or corrupt files with a :class:`RunWarning` that names them;
:func:`filter_runs`, :func:`headline` and :func:`labels` select and name its rows. The tables,
per-image scores and figures built on them are in :mod:`lessons_lib.leaderboard`, which also
re-exports everything defined here.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
