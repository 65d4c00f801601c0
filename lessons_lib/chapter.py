"""What every chapter notebook does at its start and end (the chapter contract).

* :func:`resolve_params` merges a chapter's ``PROFILES`` (``smoke``: CPU, synthetic data,
  tiny sizes; ``full``: the paper's settings) with the papermill parameters a user passed
  (``None`` means "the profile's value").
* :func:`setup` seeds everything, picks the device and prints the environment.
* :func:`get_data` generates the synthetic dataset or finds the real one, and prepares it.
* :class:`Run` writes ``metrics.json`` (:class:`lessons_lib.record.RunRecord`), per-image CSVs,
  weights and figures atomically.
"""

from __future__ import annotations

import platform
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from lessons_lib.atomic import cache_dir, write_json, write_with
from lessons_lib.data.prepare import PreparedData, prepare
from lessons_lib.errors import DataError
from lessons_lib.record import Result, RunRecord, comparison_table

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("smoke", "full")
COMMON = ("data_dir", "seed", "out_dir")  # parameters every chapter has, the same in any profile


def resolve_params(
    profiles: dict[str, dict], profile: str, given: dict[str, Any]
) -> SimpleNamespace:
    """Merge a profile's defaults with explicitly given parameters.

    Args:
        profiles: ``{"smoke": {...}, "full": {...}}``, each naming every parameter.
        profile: Which profile supplies the defaults.
        given: The notebook's parameter values (e.g. ``globals()``); keys the profiles know
            and whose value is not ``None`` override the profile. The :data:`COMMON`
            parameters (``data_dir``, ``seed``, ``out_dir``) are taken from here as they are.

    Returns:
        A namespace with every parameter, plus ``profile``.
    """
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(profiles)}")
    params = dict(profiles[profile])
    params.update({k: given[k] for k in params if given.get(k) is not None})
    params.update({k: given.get(k) for k in COMMON if k not in params})
    return SimpleNamespace(profile=profile, **params)


def runs_dir() -> Path:
    """Where chapter runs are written: ``$LESSONS_RUNS`` or ``<repository>/runs``."""
    import os

    return Path(os.environ.get("LESSONS_RUNS", REPO / "runs"))


def default_out(chapter: str, profile: str, dataset: str) -> Path:
    """A run's default output folder: ``<runs>/<chapter>/<profile>-<dataset>``."""
    return runs_dir() / chapter / f"{profile}-{dataset}"


def git_revision() -> str:
    """The repository's ``git describe`` (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def environment() -> dict[str, Any]:
    """Versions, device and hardware, as recorded in every ``metrics.json``."""
    import fastai
    import torchvision

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "fastai": fastai.__version__,
        "numpy": np.__version__,
        "cpu_count": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "git_revision": git_revision(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return env


def setup(seed: int) -> dict[str, Any]:
    """Seed Python, NumPy and PyTorch, pick the device and print the environment.

    Returns:
        :func:`environment`'s dictionary.
    """
    from fastai.torch_core import set_seed

    random.seed(seed)
    np.random.seed(seed)
    set_seed(seed, reproducible=True)
    env = environment()
    print(" | ".join(f"{k}: {v}" for k, v in env.items()))
    return env


def get_data(
    dataset: str,
    data_dir: str | Path | None,
    prepare_size: int,
    synth: dict[str, Any] | None = None,
    seed: int = 0,
    workers: int = 2,
) -> tuple[Path, PreparedData]:
    """Find (or generate) a chapter's data and prepare it at ``prepare_size``.

    Args:
        dataset: Dataset key; ``synthetic`` generates data when ``data_dir`` is ``None``.
        data_dir: The unzipped dataset, or ``None`` for generated synthetic data.
        prepare_size: Shorter side of the prepared (cached) images.
        synth: Arguments of :func:`lessons_lib.synth.make_dataset` (``n``, ``size``, ...).
        seed: Seed of the synthetic data and of seeded splits.
        workers: Processes generating and preparing the data.

    Returns:
        ``(root, prepared)``: the dataset root and its :class:`PreparedData`.
    """
    if data_dir is None:
        if dataset != "synthetic":
            raise DataError(
                f"dataset={dataset!r} needs data_dir",
                fix="pass data_dir=<the unzipped dataset folder> (README: 'Full reproduction'),"
                " or use dataset='synthetic'",
            )
        from lessons_lib.synth import default_count, make_dataset

        synth = {k: v for k, v in (synth or {}).items() if v is not None}
        n = synth.setdefault("n", 40)
        for key in ("n_valid", "n_test"):  # one folder per distinct dataset, however asked for
            synth.setdefault(key, default_count(n))
        tag = "-".join(f"{k}{v}" for k, v in sorted(synth.items()))
        root = cache_dir() / "synthetic" / f"{tag}-seed{seed}"
        if not (root / "synth.json").is_file():
            make_dataset(root, seed=seed, workers=workers, **synth)
    else:
        root = Path(data_dir).expanduser()
    return root, prepare(root, dataset, prepare_size, seed=seed, workers=workers)


class Run:
    """A chapter run's output folder: everything is written atomically.

    Args:
        out_dir: Where outputs go; default ``<runs>/<chapter>/<profile>-<dataset>``.
        chapter: Chapter id: the notebook's file stem, e.g. ``"002_resnet34_unet"``.
        paper: Short citation of the reproduced paper.
        params: The resolved parameters (recorded in ``metrics.json``).
        env: :func:`environment`'s dictionary.

    Raises:
        ValueError: ``chapter`` names no notebook in the repository's ``notebooks/``.
    """

    def __init__(
        self, out_dir: str | Path | None, chapter: str, paper: str, params: Any, env: dict
    ):
        notebooks = REPO / "notebooks"
        if notebooks.is_dir() and not (notebooks / f"{chapter}.ipynb").is_file():
            known = ", ".join(sorted(p.stem for p in notebooks.glob("*.ipynb")))
            raise ValueError(
                f"chapter id {chapter!r} is not a notebook's file stem in {notebooks}; "
                f"known chapters: {known}"
            )
        self.params = dict(vars(params)) if not isinstance(params, dict) else dict(params)
        if out_dir is None:
            out_dir = default_out(chapter, self.params["profile"], self.params["dataset"])
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.chapter, self.paper, self.env = chapter, paper, env
        self.results: list[Result] = []
        self.timings: dict[str, float] = {}
        self.start = time.time()
        self._mark = self.start
        write_json(self.out / "params.json", {"chapter": chapter, **self.params})

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap under ``name`` (in ``timings_s``)."""
        now = time.time()
        self.timings[name] = round(now - self._mark, 1)
        self._mark = now

    def add_result(
        self,
        name: str,
        split: str,
        per_image: pd.DataFrame,
        summary: dict,
        reported: dict | None = None,
        method: str | None = None,
        **details: Any,
    ) -> Result:
        """Record one evaluation and write its per-image CSV.

        Args:
            name: Evaluation name (e.g. ``"random_500"``); also the CSV's name.
            split: Which images, in words (e.g. ``"ISIC 2018 official validation"``).
            per_image: DataFrame of per-image scores.
            summary: Metric means, pooled scores and ``n_images``.
            reported: The paper's numbers for the same evaluation.
            method: The method variant, when it is not the chapter's own (an ablation).
            **details: Kept in the result's ``details``.
        """
        write_with(self.out / f"per_image_{name}.csv", lambda p: per_image.to_csv(p))
        result = Result(name, split, dict(summary), dict(reported or {}), method, details)
        self.results = [r for r in self.results if r.name != name] + [result]
        return result

    def comparison(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Ours beside the paper for the evaluations ``names`` (default: those with reported
        numbers, else all): :func:`lessons_lib.record.comparison_table`."""
        if names is None:
            chosen = [r for r in self.results if r.reported] or self.results
        else:
            chosen = [r for r in self.results if r.name in names]
        return comparison_table(chosen)

    def save_weights(self, model: torch.nn.Module, name: str = "final") -> Path:
        """Save ``model``'s weights atomically as ``<out>/models/<name>.pth``."""
        return write_with(
            self.out / "models" / f"{name}.pth", lambda p: torch.save(model.state_dict(), p)
        )

    def savefig(self, fig, name: str) -> None:
        """Save a matplotlib figure as ``<out>/figures/<name>.png`` (the notebook shows it too)."""
        write_with(
            self.out / "figures" / f"{name}.png",
            lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"),
        )

    def finish(
        self,
        data_identity: str,
        n_parameters: int | None = None,
        weights_source: str | None = None,
        **details: Any,
    ) -> Path:
        """Write ``metrics.json`` (a :class:`~lessons_lib.record.RunRecord`).

        Args:
            data_identity: Which images were used (``data.identity``).
            n_parameters: The model's trainable parameters (``None`` for no model).
            weights_source: Where the initial weights came from (``model.weights_source``).
            **details: Chapter-specific figures, kept in ``details``.
        """
        peak = None
        if torch.cuda.is_available():
            peak = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        record = RunRecord(
            chapter=self.chapter,
            paper=self.paper,
            dataset=self.params["dataset"],
            profile=self.params["profile"],
            params=self.params,
            results=self.results,
            data_identity=data_identity,
            n_parameters=n_parameters,
            weights_source=weights_source,
            wall_time_s=round(time.time() - self.start, 1),
            timings_s=self.timings,
            environment=self.env,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            gpu_peak_memory_gb=peak,
            details=details,
        )
        return record.write(self.out / "metrics.json")
