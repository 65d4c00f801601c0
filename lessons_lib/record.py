"""The record of a chapter run, ``metrics.json``: one versioned schema, written and read here.

:class:`lessons_lib.chapter.Run` writes a :class:`RunRecord`; the leaderboard and the book read
it back with :meth:`RunRecord.read`, which refuses a file of another schema version or with a
missing field, naming the file and the field. :func:`comparison_table` is the one "ours beside
the paper" table, used by every chapter and (through :func:`comparison_rows`) the leaderboard.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lessons_lib.atomic import write_json
from lessons_lib.reported import Reported, matching_metric

SCHEMA_VERSION = 3
"""Version of the ``metrics.json`` schema; raise it whenever a field changes meaning (2: a
result's ``split`` is named ``evaluated_on``, what it is: which images, in words; 3: a result's
``reported`` is a list of the paper's numbers, each with how it was computed,
:class:`lessons_lib.reported.Reported`)."""

REPORTED_METRICS = (
    "jaccard",
    "threshold_jaccard",
    "pooled_jaccard",
    "dice",
    "accuracy",
    "sensitivity",
    "specificity",
)
"""The metrics of a comparison table, in the order the challenges report them."""


# Fields whose JSON type a reader relies on (the others may be null or a number).
_TYPES = {
    "chapter": str,
    "paper": str,
    "dataset": str,
    "profile": str,
    "data_identity": str,
    "params": dict,
    "timings_s": dict,
    "environment": dict,
    "details": dict,
}


class RecordError(ValueError):
    """A ``metrics.json`` that cannot be read as this schema (the message names file and why)."""


@dataclass
class Result:
    """One evaluation of a run.

    Args:
        name: Evaluation id, e.g. ``"test_ensemble"``; also names ``per_image_<name>.csv``.
        evaluated_on: Which images the evaluation scored, in words (e.g. ``"ISIC 2017 test set
            (600 images)"``).
        metrics: Metric means, pooled scores and ``n_images``
            (:meth:`lessons_lib.metrics.SegmentationScorer.summary`).
        reported: The paper's numbers for the same images, each with how it was computed
            (empty if it reports none): compared only with our score computed the same way.
        method: The method variant, when it differs from the chapter's (an ablation).
        details: Anything else worth keeping (e.g. the ensemble's member names).
    """

    name: str
    evaluated_on: str
    metrics: dict[str, float]
    reported: list[Reported] = field(default_factory=list)
    method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Everything a run leaves in ``metrics.json``.

    Args:
        chapter: Chapter id: the notebook's file stem (``"002_resnet34_unet"``).
        paper: Short citation of the reproduced paper.
        dataset: Dataset key (``synthetic``, ``isic2017``, ...).
        profile: ``smoke`` or ``full``.
        params: Every resolved parameter of the run.
        results: The evaluations.
        data_identity: Which images were used (:attr:`lessons_lib.data.PreparedData.identity`):
            per-image scores are only compared between runs with the same identity.
        n_parameters: Trainable parameters of the model (``None`` for a method without any).
        weights_source: Where the initial weights came from, in words.
        wall_time_s: Seconds from the run's start to :meth:`Run.finish`.
        timings_s: Seconds per step (``run.lap``).
        environment: Versions, device, hardware and git revision.
        finished: ISO time stamp.
        gpu_peak_memory_gb: Peak GPU memory of the run (``None`` on a CPU).
        peak_rss_gb: Peak resident memory (RAM) of the process that ran the chapter, in GiB
            (``None`` where the system does not say).
        details: Chapter-specific figures (e.g. FLOPs per training image).
        schema: :data:`SCHEMA_VERSION` of the file.
    """

    chapter: str
    paper: str
    dataset: str
    profile: str
    params: dict[str, Any]
    results: list[Result]
    data_identity: str
    n_parameters: int | None
    weights_source: str | None
    wall_time_s: float
    timings_s: dict[str, float]
    environment: dict[str, Any]
    finished: str
    gpu_peak_memory_gb: float | None = None
    peak_rss_gb: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data."""
        return dataclasses.asdict(self)

    def write(self, path: str | Path) -> Path:
        """Write the record atomically as JSON."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> RunRecord:
        """Check and convert parsed JSON; :class:`RecordError` says what is wrong."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{source}: not a JSON object")
        version = data.get("schema")
        if version != SCHEMA_VERSION:
            raise RecordError(
                f"{source}: schema version {version!r}, this library reads version "
                f"{SCHEMA_VERSION}; re-run the chapter to write a current record"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise RecordError(
                f"{source}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing field(s) {', '.join(missing)}" if missing else "",
                        f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                    )
                    if part
                )
            )
        values = dict(data)
        for name, kind in _TYPES.items():
            if name in values and not isinstance(values[name], kind):
                raise RecordError(
                    f"{source}: {name!r} is {type(values[name]).__name__}, not {kind}"
                )
        results = values.pop("results")
        if not isinstance(results, list):
            raise RecordError(f"{source}: 'results' is not a list")
        parsed = []
        result_names = {f.name for f in dataclasses.fields(Result)}
        for i, r in enumerate(results):
            if not isinstance(r, Mapping) or not isinstance(r.get("metrics"), Mapping):
                raise RecordError(f"{source}: result {i} has no 'metrics' mapping")
            extra = sorted(set(r) - result_names)
            if extra or not {"name", "evaluated_on"} <= set(r):
                raise RecordError(
                    f"{source}: result {i} needs name, evaluated_on and metrics"
                    + (f"; unknown field(s) {', '.join(extra)}" if extra else "")
                )
            if "details" in r and not isinstance(r["details"], Mapping):
                raise RecordError(f"{source}: result {i}: 'details' is not a mapping")
            reported = r.get("reported", [])
            if not isinstance(reported, list) or not all(isinstance(x, Mapping) for x in reported):
                raise RecordError(f"{source}: result {i}: 'reported' is not a list of objects")
            try:
                numbers = [Reported.from_dict(x) for x in reported]
            except ValueError as exc:
                raise RecordError(f"{source}: result {i}: a reported number: {exc}") from exc
            parsed.append(Result(**{**r, "reported": numbers}))
        return cls(results=parsed, **values)

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read ``metrics.json``.

        Raises:
            RecordError: unreadable, not JSON, another schema version, or missing fields (the
                message names the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: unreadable ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        return cls.from_dict(data, str(path))


COMPARISON_COLUMNS = [
    "evaluation",
    "evaluated on",
    "metric",
    "paper computed as",
    "ours",
    "paper",
    "ours - paper",
    "source",
]
"""The columns of :func:`comparison_rows`."""


def comparison_rows(results: Sequence[Result]) -> pd.DataFrame:
    """Each of the paper's numbers beside our score computed the same way, long form.

    One row per reported number (results without any give none). ``metric`` is the key of our
    score computed as the paper's number was (:func:`lessons_lib.reported.matching_metric`:
    same averaging, and not at another resolution than ours), and ``ours - paper`` their
    difference. Where none of ours is computed that way (a per-batch score, a score at the
    network's input size), ``metric`` names the paper's metric and how it was computed
    (``"jaccard (per batch, at 1024x1024)"``), and ``ours``
    and ``ours - paper`` are NaN: a per-image mean is never subtracted from a pooled score.

    Columns :data:`COMPARISON_COLUMNS`; ``paper computed as`` in words (``"pooled, resolution
    not stated"``), ``source`` where the paper prints it.
    """
    rows = []
    for r in results:
        for reported in r.reported:
            key = matching_metric(reported)
            ours = r.metrics.get(key) if key is not None else None
            rows.append(
                {
                    "evaluation": r.name,
                    "evaluated on": r.evaluated_on,
                    "metric": key or f"{reported.metric} ({reported.computed_as})",
                    "paper computed as": reported.computed_as,
                    "ours": float("nan") if ours is None else float(ours),
                    "paper": float(reported.value),
                    "source": reported.source,
                }
            )
    frame = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "ours - paper"])
    frame.insert(6, "ours - paper", frame["ours"] - frame["paper"])
    return frame


def comparison_table(
    results: Sequence[Result], metrics: Sequence[str] = REPORTED_METRICS, digits: int = 3
) -> pd.DataFrame:
    """The chapters' "ours beside the paper" table: a row per metric of ours (``metrics``, then
    any other the paper's numbers are computed like), for each evaluation a column ``ours`` and
    a column ``paper``. A paper's number sits in the row of our score computed the same way
    (:func:`comparison_rows`); one that none of ours matches gets a row of its own, ``ours``
    blank."""
    paper = comparison_rows(results)
    order = [r.name for r in results]
    index = list(dict.fromkeys([*metrics, *paper["metric"]]))
    table = pd.DataFrame(index=index, dtype=float)
    for r in results:
        table[(r.name, "ours")] = [r.metrics.get(m, float("nan")) for m in index]
        mine = paper[paper["evaluation"] == r.name].set_index("metric")["paper"]
        table[(r.name, "paper")] = mine.reindex(index).to_numpy(dtype=float)
    table = table[[(e, k) for e in order for k in ("ours", "paper")]]
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["evaluation", ""])
    table.index.name = "metric"
    return table.round(digits).astype(object).where(table.notna(), "")
