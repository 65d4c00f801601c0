"""Every chapter run in one table, beside the papers' numbers (the book's Leaderboard chapter).

A chapter run (:class:`lessons_lib.chapter.Run`) leaves ``metrics.json`` (a
:class:`lessons_lib.record.RunRecord`) and one ``per_image_<evaluation>.csv`` per evaluation in
``<runs>/<chapter>/<profile>-<dataset>/``. This module reads whatever runs exist, smoke or full:

* :func:`collect_runs`: one row per (run, evaluation) with the metric means, image count,
  wall time, parameter count and a settings summary; missing or corrupt files are skipped with
  a :class:`RunWarning` that names them. :func:`filter_runs`, :func:`headline` and
  :func:`labels` select and name its rows.
* :func:`by_kind` sets smoke runs apart from real-data runs; :func:`leaderboard_table`,
  :func:`run_table` and :func:`reported_table`: the book's tables (our scores, each run's
  measured cost and settings, ours beside the paper's reported numbers); :func:`interval_table`
  and :func:`paired_table`: each mean (and the pooled JA) with its confidence interval, and
  every two evaluations on the same images compared image by image
  (:mod:`lessons_lib.metrics.statistics`).
* :func:`load_per_image`, :func:`paired_scores`, :func:`best_pair`: per-image scores, and two
  evaluations' scores on the images they share (for :func:`lessons_lib.viz.plot_pair`).
* :func:`worst_table`: the worst images of each evaluation.
* :func:`cost_table`: what a colab or full run of each chapter costs: the estimates its runs
  recorded (:mod:`lessons_lib.cost`, each profile on the GPU it is sized for) beside what runs
  of that profile on a GPU measured.

Figures of these tables are :func:`lessons_lib.viz.plot_ja_distribution` and
:func:`lessons_lib.viz.plot_pair`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lessons_lib.metrics import METRIC_LABELS as LABELS
from lessons_lib.metrics.scorer import COUNTS, SegmentationScorer
from lessons_lib.metrics.statistics import (
    bootstrap_ci,
    format_ci,
    paired_difference,
    pooled_bootstrap_ci,
)
from lessons_lib.record import REPORTED_METRICS, RecordError, Result, RunRecord, comparison_rows

METRICS = REPORTED_METRICS
"""The metric columns of :func:`collect_runs`."""

# Parameters left out of the settings summary: paths and bookkeeping, not the method.
_NOT_SETTINGS = {"profile", "dataset", "data_dir", "out_dir", "workers"}


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


def read_records(runs_dir: str | Path | None = None) -> list[tuple[Path, RunRecord]]:
    """Every readable ``metrics.json`` under ``runs_dir`` with its path, in path order.

    Args:
        runs_dir: Folder searched recursively; default :func:`lessons_lib.chapter.runs_dir`
            (``$LESSONS_RUNS`` or ``<repository>/runs``).

    A file that is not a current :class:`~lessons_lib.record.RunRecord` (unreadable, not JSON,
    another schema version, missing fields) is skipped with a :class:`RunWarning` naming it.
    """
    if runs_dir is None:
        from lessons_lib.chapter import runs_dir as default_runs_dir

        runs_dir = default_runs_dir()
    runs_dir = Path(runs_dir)
    found = []
    for path in sorted(runs_dir.rglob("metrics.json")) if runs_dir.is_dir() else []:
        if any(part.startswith(".") for part in path.relative_to(runs_dir).parts):
            continue  # .ipynb_checkpoints and the like
        try:
            found.append((path, RunRecord.read(path)))
        except RecordError as exc:
            _warn(path, str(exc).removeprefix(f"{path}: "))
    return found


def collect_runs(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every evaluation of every run under ``runs_dir``, one row each.

    Args:
        runs_dir: As :func:`read_records`.

    Returns:
        Columns ``method`` (the chapter, or the result's ``method`` prefixed with its chapter
        unless it names it already), ``chapter, paper,
        dataset, evaluation, evaluated on, profile``, the :data:`METRICS`, ``n_images``,
        ``reported`` (the paper's numbers, a list of :class:`lessons_lib.reported.Reported`),
        ``scores`` (every score of the result, pooled ones included), ``n_parameters``,
        ``wall_time_s``, ``gpu_peak_memory_gb`` (``None`` on a CPU), ``peak_rss_gb`` (the
        process's peak RAM; ``None`` where not recorded), ``device``,
        ``finished``, ``settings`` (a summary of the parameters),
        ``data`` (the run's ``data_identity``), ``external`` (the dataset key of an external
        validation, :meth:`lessons_lib.chapter.Run.external_evaluation`; else ``None``) and
        ``run`` (the run folder).
    """
    rows = []
    for path, record in read_records(runs_dir):
        env = record.environment
        for result in record.results:
            row = {
                "method": _method(record.chapter, result.method),
                "chapter": record.chapter,
                "paper": record.paper,
                "dataset": record.dataset,
                "evaluation": result.name,
                "evaluated on": result.evaluated_on,
                "profile": record.profile,
            }
            for metric in METRICS:
                value = result.metrics.get(metric)
                row[metric] = float(value) if isinstance(value, int | float) else np.nan
            row.update(
                n_images=result.metrics.get("n_images"),
                reported=list(result.reported),
                scores=dict(result.metrics),
                n_parameters=np.nan if record.n_parameters is None else record.n_parameters,
                wall_time_s=record.wall_time_s,
                gpu_peak_memory_gb=record.gpu_peak_memory_gb,
                peak_rss_gb=record.peak_rss_gb,
                device=env.get("gpu") or env.get("device"),
                finished=record.finished,
                settings=_settings(record.params),
                data=record.data_identity,
                external=result.details.get("external"),
                run=path.parent,
            )
            rows.append(row)
        rows += _baseline_rows(path, record)
    columns = [
        "method",
        "chapter",
        "paper",
        "dataset",
        "evaluation",
        "evaluated on",
        "profile",
        *METRICS,
        "n_images",
        "reported",
        "scores",
        "n_parameters",
        "wall_time_s",
        "gpu_peak_memory_gb",
        "peak_rss_gb",
        "device",
        "finished",
        "settings",
        "data",
        "external",
        "run",
    ]
    return pd.DataFrame(rows, columns=columns)


BASELINE = "classical baseline"
"""The method name of the baseline rows (:func:`_baseline_rows`), before the chapter's."""


def _baseline_rows(path: Path, record: RunRecord) -> list[dict[str, Any]]:
    """The classical baseline a run scored beside itself (``details.baseline``,
    :meth:`lessons_lib.chapter.Run.beside_baseline`): one row per split, from its per-image CSV,
    named ``classical baseline (<chapter>'s input)`` (it segments the images the chapter's
    network was given). A CSV that cannot be read leaves its row out, with a warning."""
    rows = []
    for split, summary in sorted((record.details.get("baseline") or {}).items()):
        frame = load_per_image({"run": path.parent, "evaluation": f"baseline_{split}"})
        if frame is None:
            continue
        if set(COUNTS) <= set(frame.columns):  # the scorer's summary: means and pooled scores
            scorer = SegmentationScorer()
            for image_id, row in frame[list(COUNTS)].iterrows():
                scorer.add_counts(image_id, *(int(row[c]) for c in COUNTS))
            scores = scorer.summary()
        else:  # written before the counts were: the means alone
            scores = {k: float(v) for k, v in frame.mean(numeric_only=True).items()}
        rows.append(
            {
                "method": f"{BASELINE} ({record.chapter}'s input)",
                "chapter": record.chapter,
                "paper": "the course's thresholding floor (lessons_lib.baseline)",
                "dataset": record.dataset,
                "evaluation": f"baseline_{split}",
                "evaluated on": f"{split} set ({len(frame)} images), classical baseline",
                "profile": record.profile,
                **{m: scores.get(m, np.nan) for m in METRICS},
                "n_images": int(summary.get("n_images", len(frame))),
                "reported": [],
                "scores": scores,
                "n_parameters": np.nan,
                "wall_time_s": record.wall_time_s,
                "gpu_peak_memory_gb": record.gpu_peak_memory_gb,
                "peak_rss_gb": record.peak_rss_gb,
                "device": record.environment.get("gpu") or record.environment.get("device"),
                "finished": record.finished,
                "settings": "",
                "data": record.data_identity,
                "external": None,
                "run": path.parent,
            }
        )
    return rows


def _method(chapter: str, method: str | None) -> str:
    """The leaderboard's name of a result's method: the chapter, or a variant named with its
    chapter (``"000_lesionseg: opening none"``), so an ablation's row says whose it is."""
    if not method:
        return chapter
    return method if method.startswith(chapter) else f"{chapter}: {method}"


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


SMOKE = "smoke"
"""The profile whose runs show that the code works, not how good a method is (synthetic data,
a few CPU steps): the leaderboard shows them apart from real-data runs."""


def by_kind(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of real-data runs and those of smoke runs, apart, each with a heading.

    Returns:
        ``[(heading, rows), ...]``: real-data runs (every profile but :data:`SMOKE`) first, then
        smoke runs; a kind without rows is left out.
    """
    smoke = runs["profile"] == SMOKE
    kinds = [
        ("Runs on real data", runs[~smoke]),
        (
            "Smoke runs (synthetic data, a few CPU steps: they show that the code works, "
            "not how good a method is)",
            runs[smoke],
        ),
    ]
    return [(heading, rows) for heading, rows in kinds if not rows.empty]


def _data(runs: pd.DataFrame) -> pd.Series:
    """The data and profile of each row in one column: ``"ph2 (laptop)"``."""
    return runs["dataset"].astype(str) + " (" + runs["profile"].astype(str) + ")"


def leaderboard_table(runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The book's main table: our scores, best mean JA first within each dataset.

    Columns ``method, data`` (the dataset and, in brackets, the profile), ``evaluated on``, the
    six metric means, ``images``. An external validation (rows whose ``external`` names a
    dataset) is not a row of its own: its mean JA stands in the column ``external JA`` of its
    run's other rows of the same method, its dataset and image count in ``external data`` (both
    columns only when some run has one). What a run cost is :func:`run_table`'s.
    """
    external = runs["external"].notna() if "external" in runs else pd.Series(False, runs.index)
    outside, runs = runs[external], runs[~external]
    table = runs.assign(data=_data(runs))
    table = table.sort_values(["dataset", "jaccard"], ascending=[True, False])
    columns = ["method", "data", "evaluated on", *METRICS, "n_images"]
    extra = []
    if not outside.empty:
        found = {
            (str(r["run"]), r["method"]): (r["jaccard"], f"{r['external']} ({r['n_images']})")
            for _, r in outside.iterrows()
        }
        keys = list(zip(table["run"].astype(str), table["method"], strict=True))
        table["external JA"] = [found.get(k, (np.nan, ""))[0] for k in keys]
        table["external data"] = [found.get(k, (np.nan, ""))[1] for k in keys]
        extra = ["external JA", "external data"]
    table = table[[*columns, *extra]].rename(columns={**LABELS, "n_images": "images"})
    return table.round(digits).reset_index(drop=True)


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: how it was made and what it cost, measured.

    Columns ``method`` (the chapter), ``data`` (dataset and profile), ``device``, ``parameters``
    (the network's trainable parameters), ``run time`` (wall time: data preparation, training,
    evaluation and figures), ``GPU memory`` (peak, measured; empty on a CPU), ``RAM`` (the
    process's peak resident memory; empty where not recorded), ``finished`` and
    ``settings`` (every parameter but paths). The estimate of what a GPU run costs, beside what
    GPU runs measured, is :func:`cost_table`'s.
    """
    first = runs.drop_duplicates("run")
    table = pd.DataFrame(
        {
            "method": first["chapter"],
            "data": _data(first),
            "device": first["device"].fillna(""),
            "parameters": first["n_parameters"].map(lambda n: "" if pd.isna(n) else f"{int(n):,}"),
            "run time": first["wall_time_s"].map(_duration),
            "GPU memory": first["gpu_peak_memory_gb"].map(
                lambda g: "" if g is None or pd.isna(g) else f"{g:.1f} GiB"
            ),
            "RAM": first["peak_rss_gb"].map(
                lambda g: "" if g is None or pd.isna(g) else f"{g:.1f} GiB"
            ),
            "finished": first["finished"],
            "settings": first["settings"],
        }
    )
    return table.reset_index(drop=True)


def reported_table(runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Our scores beside each paper's reported numbers, one row per reported number.

    Columns ``method, dataset, evaluated on, profile, metric, paper computed as, paper, ours,
    ours - paper, source``, through the chapters' own
    :func:`lessons_lib.record.comparison_rows`: each paper number beside our score computed the
    same way (same averaging, not at another size), ``ours`` and ``ours - paper`` blank where
    none of ours is.
    """
    frames = []
    for _, r in runs.iterrows():
        result = Result(r["evaluation"], r["evaluated on"], r["scores"], r["reported"])
        rows = comparison_rows([result])
        frames.append(rows.assign(method=r["method"], dataset=r["dataset"], profile=r["profile"]))
    columns = [
        "method",
        "dataset",
        "evaluated on",
        "profile",
        "metric",
        "paper computed as",
        "paper",
        "ours",
        "ours - paper",
        "source",
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)
    table["metric"] = table["metric"].map(lambda m: LABELS.get(m, m))
    return table[columns].round(digits)


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
    """The pair that matters most: a chapter against the classical baseline on the same images
    (the baseline row of its own run), or else two evaluations of *different methods* on the
    same data; the most shared images first among them.

    Returns ``(row_a, row_b, n_common)`` (positional indices into ``runs``; ``row_b`` the
    chapter when the other is the baseline) or ``None``. Evaluations of different data (the
    runs' ``data_identity``) are never paired: their image ids may coincide without naming the
    same images.
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
            baseline = [str(r["method"]).startswith(BASELINE) for r in (ri, rj)]
            against_floor = sum(baseline) == 1 and ri["run"] == rj["run"]
            # the baseline first: the chapter is the "second", above the diagonal
            a, b = (j, i) if baseline[1] else (i, j)
            rank = (against_floor, n)
            if n >= min_common and (best is None or rank > best[3]):
                best = (a, b, n, rank)
    return None if best is None else best[:3]


INTERVAL_METRICS = ("jaccard", "threshold_jaccard", "dice")
"""The per-image means the leaderboard gives a confidence interval."""


def interval_table(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each evaluation's mean JA, thresholded JA and Dice, and its pooled JA, each with its 95%
    bootstrap confidence interval (the images resampled, 2000 times, percentile method:
    :func:`lessons_lib.metrics.statistics.bootstrap_ci` for the means,
    :func:`~lessons_lib.metrics.statistics.pooled_bootstrap_ci` for the pooled score, which
    resamples each image's confusion counts), from its per-image CSV; best JA first within
    each dataset.

    Columns ``method, data, evaluated on, images``, one ``<metric> [95% CI]`` per
    :data:`INTERVAL_METRICS` (as ``0.781 [0.765, 0.797]``) and ``pooled JA [95% CI]`` (empty
    for a CSV without the counts ``tp fp tn fn``, written before they were). Rows whose CSV
    cannot be read are left out (a :class:`RunWarning` names them).
    """
    pooled = f"pooled {LABELS['jaccard']} [95% CI]"
    columns = ["method", "data", "evaluated on", "images"]
    columns += [f"{LABELS.get(m, m)} [95% CI]" for m in INTERVAL_METRICS] + [pooled]
    rows = []
    runs = runs.assign(data_shown=_data(runs))
    for _, row in runs.sort_values(["dataset", "jaccard"], ascending=[True, False]).iterrows():
        frame = load_per_image(row)
        if frame is None:
            continue
        shown = dict.fromkeys(columns, "") | {
            "method": row["method"],
            "data": row["data_shown"],
            "evaluated on": row["evaluated on"],
            "images": len(frame),
        }
        for metric in INTERVAL_METRICS:
            if metric in frame.columns:
                value = format_ci(*bootstrap_ci(frame[metric], seed=seed))
                shown[f"{LABELS.get(metric, metric)} [95% CI]"] = value
        if set(COUNTS) <= set(frame.columns):
            shown[pooled] = format_ci(*pooled_bootstrap_ci(frame, "jaccard", seed=seed))
        rows.append(shown)
    return pd.DataFrame(rows, columns=columns)


def paired_table(runs: pd.DataFrame, metric: str = "jaccard", seed: int = 0) -> pd.DataFrame:
    """Every two evaluations scored on exactly the same images, compared image by image
    (:func:`lessons_lib.metrics.statistics.paired_difference`): the mean of ``second - first``
    with its 95% bootstrap interval, the Wilcoxon signed-rank p-value and the share of images
    the second scores higher.

    Two evaluations pair only when their runs used the same data (``data_identity``) and their
    per-image CSVs list the same image ids: runs on different images are never paired.

    Columns ``first, second, images, second - first [95% CI], Wilcoxon p, second better on``
    (the evaluations named by :func:`labels`).
    """
    names = labels(runs)
    loaded = []
    for i, (_, row) in enumerate(runs.iterrows()):
        frame = load_per_image(row)
        if frame is not None and metric in frame.columns:
            loaded.append((names.iloc[i], row["data"], frame[metric]))
    rows = []
    for x, (name_a, data_a, a) in enumerate(loaded):
        for name_b, data_b, b in loaded[x + 1 :]:
            if data_a != data_b or set(a.index) != set(b.index):
                continue
            d = paired_difference(a, b, seed=seed)
            rows.append(
                {
                    "first": name_a,
                    "second": name_b,
                    "images": d.n,
                    "second - first [95% CI]": format_ci(d.mean, d.low, d.high, sign=True),
                    "Wilcoxon p": round(d.p_value, 4),
                    "second better on": f"{d.better:.0%}",
                }
            )
    columns = [
        "first",
        "second",
        "images",
        "second - first [95% CI]",
        "Wilcoxon p",
        "second better on",
    ]
    return pd.DataFrame(rows, columns=columns)


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


COST_KEY = "cost_estimates"
"""The ``details`` entry of ``metrics.json`` holding a chapter's cost estimates, one per GPU
profile: ``{"full": ..., "colab": ...}``, each a :meth:`lessons_lib.cost.CostEstimate.as_dict`
(``run.finish(..., cost_estimates=...)``). A record written before there were two has the full
profile's alone, under ``cost_estimate``."""

GPU_PROFILES = ("colab", "full")
"""The profiles a chapter estimates the cost of, each on its own GPU
(:func:`lessons_lib.recipes.profile_gpu`): Colab's T4, and the paper's settings on an A100."""


def _estimates(details: Mapping[str, Any]) -> dict[str, Any]:
    """A record's estimates by profile (the older single ``cost_estimate`` is the full one)."""
    if COST_KEY in details:
        found = details[COST_KEY]
        return dict(found) if isinstance(found, Mapping) else {"?": found}
    return {"full": details["cost_estimate"]} if "cost_estimate" in details else {}


def _cost_row(estimate: Mapping[str, Any]) -> dict[str, Any]:
    """The leaderboard's columns of one recorded cost estimate (``KeyError``/``TypeError`` if
    it is not one)."""
    training = [s for s in estimate["stages"] if s["batch_size"] is not None]
    largest = max(training, key=lambda s: s["input"][0] * s["input"][1])
    total = estimate["total"]
    return {
        "parameters": f"{int(estimate['parameters']):,}",
        "input": "x".join(str(int(side)) for side in largest["input"]),
        "GFLOP/image train": float(largest["gflop_train"]),
        "images trained": int(total["images_trained"]),
        "GPU hours": float(total["gpu_hours"]),
        "peak memory GiB": float(total["peak_memory_gb"]),
        "fits": bool(total["fits"]),
        "assumed GPU": f"{estimate['gpu']['name']} at {float(estimate['efficiency']):.0%} of peak",
    }


def cost_table(records: Sequence[tuple[Path, RunRecord]], digits: int = 2) -> pd.DataFrame:
    """What a run of each chapter on a GPU costs, estimated, and measured where one ran.

    A chapter computes the cost of its ``colab`` and ``full`` profiles, each on the GPU it is
    sized for (:data:`GPU_PROFILES`), whatever profile it runs (parameters, FLOPs per image at
    the largest training input, GPU hours at a stated share of the peak, peak memory;
    :func:`lessons_lib.cost.estimate_cost`), and records them in ``metrics.json``
    (``details["cost_estimates"]``). Nothing is timed here; beside each estimate stands what
    the chapter's latest run of that profile on a GPU measured.

    Args:
        records: From :func:`read_records`.
        digits: Decimals of the FLOPs, hours and memory.

    Returns:
        One row per chapter and profile with an estimate (index ``chapter, profile``; the
        latest finished run's estimates): ``parameters``, ``input`` (the largest training
        input), ``GFLOP/image train`` (forward and backward) at that input, ``images
        trained``, ``GPU hours``, ``peak memory GiB``, ``fits`` and ``assumed GPU``; then that
        profile's latest run on a GPU: ``measured hours`` (its wall time, data preparation and
        evaluation included), ``measured peak memory GiB`` and ``measured on`` (empty without
        one). An estimate that is not a cost estimate is skipped with a :class:`RunWarning`
        naming the file.
    """
    estimates: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    measured: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for path, record in records:
        chapter, finished = record.chapter, record.finished
        for profile, estimate in _estimates(record.details).items():
            try:
                if profile not in GPU_PROFILES:
                    raise KeyError(profile)
                row = _cost_row(estimate)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                _warn(path, f"details['{COST_KEY}'] is not a cost estimate ({exc!r})")
                continue
            key = (chapter, profile)
            if key not in estimates or finished >= estimates[key][0]:
                estimates[key] = (finished, row)
        key = (chapter, record.profile)
        if record.profile in GPU_PROFILES and record.gpu_peak_memory_gb is not None:
            if key not in measured or finished >= measured[key][0]:
                env = record.environment
                measured[key] = (
                    finished,
                    {
                        "measured hours": record.wall_time_s / 3600,
                        "measured peak memory GiB": record.gpu_peak_memory_gb,
                        "measured on": str(env.get("gpu") or env.get("device") or ""),
                    },
                )
    columns = [
        "parameters",
        "input",
        "GFLOP/image train",
        "images trained",
        "GPU hours",
        "peak memory GiB",
        "fits",
        "assumed GPU",
        "measured hours",
        "measured peak memory GiB",
        "measured on",
    ]
    rows = {key: {**row, **measured.get(key, (None, {}))[1]} for key, (_, row) in estimates.items()}
    index = pd.MultiIndex.from_tuples(sorted(rows) or [("", "")], names=["chapter", "profile"])
    index = index[: len(rows)]
    table = pd.DataFrame([rows[key] for key in index], index=index, columns=columns)
    table["measured on"] = table["measured on"].astype(object).fillna("")
    return table.round(digits)
