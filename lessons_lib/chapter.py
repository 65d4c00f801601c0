"""What every chapter notebook does at its start and end (the chapter contract).

* the chapter's recipe (:mod:`lessons_lib.recipes`) declares every parameter once;
  ``recipe.resolve(profile, globals())`` (:func:`lessons_lib.params.resolve`) merges the
  profile's values (``smoke``: CPU, synthetic data, tiny sizes; ``full``: the paper's settings)
  with the papermill parameters a user passed (``None`` means "the profile's value"), checking
  and converting each against its declaration (:class:`ParameterError`).
* :func:`setup` seeds everything, picks the device and prints the environment.
* :func:`get_data` generates the synthetic dataset or finds the real one, and prepares it.
* :class:`Run` writes ``metrics.json`` (:class:`lessons_lib.record.RunRecord`), per-image CSVs,
  weights and figures atomically, and never mixes a rerun's files with an earlier run's
  (:class:`RunFolderError`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lessons_lib.atomic import cache_dir, jsonable, temp_destination, write_json, write_with
from lessons_lib.data.layouts import needs_data_dir
from lessons_lib.data.prepare import PreparedData, prepare
from lessons_lib.errors import DataError
from lessons_lib.params import ParameterError
from lessons_lib.record import Result, RunRecord, comparison_table
from lessons_lib.reported import Reported

__all__ = [
    "ParameterError",
    "Run",
    "RunFolderError",
    "clear_run_folder",
    "default_out",
    "environment",
    "display_path",
    "get_data",
    "git_revision",
    "read_run_params",
    "runs_dir",
    "setup",
]

REPO = Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """Where chapter runs are written: ``$LESSONS_RUNS``; else ``<repository>/runs`` in a
    checkout of the course, or ``runs/`` in the working folder where the library is installed
    as a package (a chapter opened on Colab: ``/content/runs``)."""
    import os

    if "LESSONS_RUNS" in os.environ:
        return Path(os.environ["LESSONS_RUNS"])
    return REPO / "runs" if (REPO / "pyproject.toml").is_file() else Path.cwd() / "runs"


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a chapter prints it, without the name of the machine or user that ran it (an
    executed chapter, and the book built from it, show the path to readers elsewhere):

    * inside a folder set by ``$LESSONS_RUNS`` or ``$LESSONS_CACHE``: from that variable
      (``$LESSONS_RUNS/000_lesionseg/smoke-synthetic/metrics.json``), a path a shell expands;
    * inside the course's checkout: relative to it (``runs/000_lesionseg/smoke-synthetic``, as
      the README names run folders);
    * inside the home folder: from ``~`` (``~/.cache/lessons_lib/synthetic/...``);
    * anything else (a relative path, a dataset elsewhere) as given.

    Args:
        path: A file or folder.

    Returns:
        The path to print.
    """
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    for variable in ("LESSONS_RUNS", "LESSONS_CACHE"):
        folder = os.environ.get(variable)
        if folder and Path(folder).expanduser().is_absolute():
            folder_path = Path(folder).expanduser()
            if path.is_relative_to(folder_path):
                return f"${variable}/{path.relative_to(folder_path).as_posix()}".removesuffix("/.")
    if (REPO / "pyproject.toml").is_file() and path.is_relative_to(REPO):
        return path.relative_to(REPO).as_posix()
    home = Path.home()
    if path == home:
        return "~"
    if path.is_relative_to(home) and home != Path(home.anchor):
        return f"~/{path.relative_to(home).as_posix()}"
    return str(path)


def default_out(chapter: str, profile: str, dataset: str, dry_run: bool = False) -> Path:
    """A run's default output folder: ``<runs>/<chapter>/<profile>-<dataset>``, and
    ``dry-run-<profile>-<dataset>`` for a dry run (it never takes the real run's folder)."""
    return runs_dir() / chapter / f"{'dry-run-' if dry_run else ''}{profile}-{dataset}"


def git_revision() -> str:
    """The repository's ``git describe`` (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def peak_rss_gb() -> float | None:
    """This process's peak resident memory (RAM) so far, in GiB to two decimals; ``None`` where
    the system does not report it (Windows has no ``resource`` module)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)


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
    limit: int | None = None,
) -> tuple[Path, PreparedData]:
    """Find (or generate) a chapter's data and prepare it at ``prepare_size``.

    Args:
        dataset: Dataset key; ``synthetic`` generates data when ``data_dir`` is ``None``.
        data_dir: The unzipped dataset, or ``None`` for generated synthetic data.
        prepare_size: Shorter side of the prepared (cached) images.
        synth: Arguments of :func:`lessons_lib.synth.make_dataset` (``n``, ``size``, ...).
        seed: Seed of the synthetic data and of seeded splits.
        workers: Processes generating and preparing the data.
        limit: Use only the first ``limit`` pairs of each split (a dry run's
            ``dry_run_images``; ``None``: all).

    Returns:
        ``(root, prepared)``: the dataset root and its :class:`PreparedData`.
    """
    if data_dir is None:
        if dataset != "synthetic":
            raise needs_data_dir(dataset)
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
    return root, prepare(root, dataset, prepare_size, seed=seed, workers=workers, limit=limit)


RUN_FILES = (
    "params.json",
    "predictor.json",
    "metrics.json",
    "history.csv",
    "per_image_*.csv",
    "figures/*.png",
    "models/*.pth",
    "models/*.resume.json",
    "predictions/*/*_segmentation.png",
    "evaluations/*/*",
    "*/history.csv",
    "*/models/*.pth",
    "*/models/*.resume.json",
)
"""What a chapter run writes in its folder (relative patterns): the files :class:`Run` writes,
the training path's ``history.csv`` and checkpoints (also in a sub-folder per model, as the
ensemble and ablation chapters train them), the stages' resume checkpoints, the evaluations'
stored results and predicted masks. A fresh run into the folder deletes these, and the
temporary files an interrupted write left of them, and nothing else (:func:`clear_run_folder`);
a resumed run keeps them."""


LOCK_FILE = ".run.lock"
"""The lock a run holds in its folder while it runs (it names the holder's PID and start time);
removed by :meth:`Run.finish`, released by the system when the process ends however it ends."""

_HELD_LOCKS: dict[Path, int] = {}
"""Run folders this process holds locked, with the lock file's descriptor: a chapter's opening
run again in the same kernel takes its own folder back."""


def _lock_run_folder(out: Path) -> bool:
    """Take ``out``'s run lock (the folder exists); ``True`` when this call created the lock
    file. A folder another process holds is a :class:`RunFolderError` naming that process."""
    key = out.resolve()
    if key in _HELD_LOCKS:
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, as before
        return False
    path = out / LOCK_FILE
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 500).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise RunFolderError(
            f"out_dir is in use by another run ({holder}): two runs writing one folder would "
            "mix their files",
            out,
            "wait until that run has finished (or stop it), or pass another out_dir",
        ) from None
    except OSError:  # pragma: no cover - a file system without locks: run unlocked
        os.close(fd)
        return created
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    os.write(fd, f"PID {os.getpid()} on {platform.node()}, started {started}".encode())
    _HELD_LOCKS[key] = fd
    return created


def _release_run_folder(out: Path, remove: bool) -> None:
    """Release ``out``'s run lock if this process holds it, removing the file when ``remove``."""
    fd = _HELD_LOCKS.pop(out.resolve(), None)
    if fd is None:
        return
    if remove:
        (out / LOCK_FILE).unlink(missing_ok=True)
    os.close(fd)


def _papermill_notebook(path: Path, chapter: str) -> bool:
    """Whether ``path`` is the notebook papermill writes while running ``chapter`` into this
    very file (``papermill <chapter>.ipynb <out_dir>/x.ipynb -p out_dir <out_dir>``): its
    papermill metadata names ``<chapter>.ipynb`` as input and ``path`` as output."""
    if path.suffix != ".ipynb" or not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())["metadata"]["papermill"]
        source, output = Path(meta["input_path"]), Path(meta["output_path"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return False
    if not output.is_absolute():  # relative to where papermill ran: compare names and stems
        return source.stem == chapter and output.name == path.name
    return source.stem == chapter and output.resolve() == path.resolve()


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # an open file: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


class RunFolderError(DataError):
    """An ``out_dir`` a run cannot use: another run's folder with different parameters, a
    folder that is not a run's, or a file (the message names the folder and the fix)."""


def _is_run_file(relative: Path) -> bool:
    parts = relative.parts
    return any(
        len(parts) == len(pattern.split("/"))
        and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern.split("/"), strict=True))
        for pattern in RUN_FILES
    )


def read_run_params(folder: str | Path) -> dict[str, Any] | None:
    """The ``params.json`` a chapter run wrote in ``folder``: a JSON object naming its
    ``chapter``, or ``None`` if there is none (missing, unreadable or not a run's)."""
    try:
        data = json.loads((Path(folder) / "params.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("chapter"), str) else None


def clear_run_folder(folder: str | Path) -> list[Path]:
    """Delete an earlier run's files (:data:`RUN_FILES` and their temporary files) in a run
    folder; folders left empty go too. Anything else stays.

    Returns:
        The files that stay (not written by a run), for the caller to mention.

    Raises:
        RunFolderError: ``folder`` holds no ``params.json`` written by a chapter run.
    """
    folder = Path(folder)
    if read_run_params(folder) is None:
        raise RunFolderError(
            "not a chapter run's folder (no params.json written by a run): nothing is deleted",
            folder,
            "pass a new or empty folder as out_dir",
        )
    touched: set[Path] = set()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() and not path.is_symlink():
            continue
        relative = path.relative_to(folder)
        temporary = temp_destination(path.name)
        if _is_run_file(relative) or (temporary and _is_run_file(relative.with_name(temporary))):
            path.unlink()
            touched.add(path.parent)
    for directory in sorted(touched, key=lambda p: len(p.parts), reverse=True):
        while directory != folder:
            try:
                directory.rmdir()  # only when empty
            except OSError:
                break
            directory = directory.parent
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``name: old -> new`` for the recorded parameters that differ (``out_dir``, the folder
    itself, and ``overwrite`` are not the run's parameters)."""
    ignored = ("out_dir", "overwrite")
    before, now = jsonable(before), jsonable(now)
    changed = []
    for key in dict.fromkeys([*before, *now]):
        if key in ignored or before.get(key, ...) == now.get(key, ...):
            continue
        old = json.dumps(before[key]) if key in before else "(absent)"
        new = json.dumps(now[key]) if key in now else "(absent)"
        changed.append(f"{key}: {old} -> {new}")
    return changed


class Run:
    """A chapter run's output folder: everything is written atomically.

    The folder is made, and ``params.json`` written, once every check has passed (a wrong
    ``out_dir`` or chapter id leaves nothing behind). A rerun never mixes two runs' files:

    * a folder of an **unfinished** earlier run with the same parameters (no ``metrics.json``:
      it was killed, pre-empted or stopped by an error) is **resumed**: its files stay, finished
      training stages are loaded instead of trained (:func:`lessons_lib.training.fit_stage`
      continues an interrupted stage after its last finished epoch) and finished evaluations
      are read back (:meth:`evaluation`);
    * a folder of a finished earlier run with the same parameters is cleared of that run's
      files (:func:`clear_run_folder`) and the run starts afresh;
    * a folder of an earlier run with different parameters is refused (a
      :class:`RunFolderError` lists the parameters that differ), unless ``overwrite``, which
      clears it; a folder holding only the earlier run's ``params.json`` (it stopped before
      writing anything) is simply reused;
    * a non-empty folder that is not a run's (no ``params.json`` written by a run) is refused:
      a run deletes only files a run writes; the notebook papermill writes for this very run
      there (``papermill <chapter>.ipynb runs/x/out.ipynb -p out_dir runs/x``) is accepted;
    * a folder another run is using (a process holding its :data:`LOCK_FILE`) is refused at
      once, naming that process (its PID and start time); the lock goes with the process,
      however it ends, and :meth:`finish` removes its file.

    Args:
        out_dir: Where outputs go; default ``<runs>/<chapter>/<profile>-<dataset>``.
        chapter: Chapter id: the notebook's file stem, e.g. ``"002_resnet34_unet"``.
        paper: Short citation of the reproduced paper.
        params: The resolved parameters (recorded in ``metrics.json``).
        env: :func:`environment`'s dictionary.
        overwrite: Replace an earlier run with different parameters in ``out_dir``; ``None``:
            the ``overwrite`` parameter in ``params`` (a chapter's papermill parameter), else
            ``False``. It is not recorded with the parameters.

    Raises:
        ValueError: ``chapter`` names no notebook in the repository's ``notebooks/``.
        RunFolderError: ``out_dir`` is a file, another run's folder with different parameters
            (without ``overwrite``), a non-empty folder that is not a run's, or in use by a
            running run.
    """

    def __init__(
        self,
        out_dir: str | Path | None,
        chapter: str,
        paper: str,
        params: Any,
        env: dict,
        overwrite: bool | None = None,
    ):
        notebooks = REPO / "notebooks"
        if notebooks.is_dir() and not (notebooks / f"{chapter}.ipynb").is_file():
            known = ", ".join(sorted(p.stem for p in notebooks.glob("*.ipynb")))
            raise ValueError(
                f"chapter id {chapter!r} is not a notebook's file stem in {notebooks}; "
                f"known chapters: {known}"
            )
        self.params = dict(vars(params)) if not isinstance(params, dict) else dict(params)
        from_params = self.params.pop("overwrite", None)
        overwrite = bool(from_params if overwrite is None else overwrite)
        if out_dir is None:
            out_dir = default_out(
                chapter,
                self.params["profile"],
                self.params["dataset"],
                bool(self.params.get("dry_run")),
            )
        self.out = Path(out_dir).expanduser().absolute()  # a relative out_dir: from here
        record = {"chapter": chapter, **self.params}
        if self.out.exists() and not self.out.is_dir():
            raise RunFolderError(
                "out_dir is a file, not a folder",
                self.out,
                "pass a folder (new or empty) as out_dir",
            )
        new_folder = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        created_lock = _lock_run_folder(self.out)  # before anything is read or cleared
        try:
            self._claim(record, overwrite, chapter)
        except BaseException:
            _release_run_folder(self.out, remove=created_lock)
            if new_folder:
                self.out.rmdir()
            raise
        if self.resumed:
            print(
                f"resuming the unfinished run in {self.out}: finished stages and evaluations "
                "are read back, an interrupted stage continues after its last finished epoch"
            )
        self.chapter, self.paper, self.env = chapter, paper, env
        self.results: list[Result] = []
        self.baseline: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}
        self.start = time.time()
        self._mark = self.start
        write_json(self.out / "params.json", record)

    def _claim(self, record: dict[str, Any], overwrite: bool, chapter: str) -> None:
        """Check ``self.out`` can take this run and clear an earlier run's files from it. The
        notebook papermill is writing for this run (``papermill ... <out_dir>/x.ipynb -p
        out_dir <out_dir>``) is not another's file: it is neither refused nor listed."""
        out = self.out
        self.resumed = False
        fix = (
            "pass a new out_dir to keep the earlier run (papermill: -p out_dir <folder>), or "
            "overwrite=True to replace it (papermill: -p overwrite True)"
        )
        self.own_notebooks = {p for p in out.iterdir() if _papermill_notebook(p, chapter)}
        entries = [
            p for p in out.iterdir() if not p.name.startswith(".") and p not in self.own_notebooks
        ]
        before = read_run_params(out)
        if before is None:
            if entries:
                why = (
                    "its params.json was not written by a chapter run"
                    if (out / "params.json").exists()
                    else "it has no params.json"
                )
                also = " (overwrite=True replaces only a chapter run's folder)" if overwrite else ""
                raise RunFolderError(
                    f"out_dir holds files but is not a chapter run's folder ({why}); a run "
                    f"would mix its files with them, and deletes only files a run writes{also}",
                    out,
                    "pass a new or empty folder as out_dir",
                )
            return
        changed = _differences(before, record)
        outputs = [p for p in entries if p.name != "params.json"]
        if changed and outputs and not overwrite:
            raise RunFolderError(
                "out_dir holds an earlier run with other parameters ("
                + "; ".join(changed)
                + "); the new run's files would be mixed with the earlier run's",
                out,
                fix,
            )
        if outputs and not changed and not overwrite and not (out / "metrics.json").exists():
            self.resumed = True  # an unfinished run with these parameters: continue it
            return
        kept = [
            p
            for p in clear_run_folder(out)
            if not any(part.startswith(".") for part in p.relative_to(out).parts)
            and p not in self.own_notebooks
        ]
        if kept:
            warnings.warn(
                f"{out}: an earlier run's files were removed; kept {len(kept)} file(s) that a "
                f"run does not write: {', '.join(str(p.relative_to(out)) for p in kept[:5])}"
                + (", ..." if len(kept) > 5 else ""),
                stacklevel=3,
            )

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap under ``name`` (in ``timings_s``)."""
        now = time.time()
        self.timings[name] = round(now - self._mark, 1)
        self._mark = now

    def add_result(
        self,
        name: str,
        evaluated_on: str,
        per_image: pd.DataFrame,
        summary: dict,
        reported: Sequence[Reported] = (),
        method: str | None = None,
        **details: Any,
    ) -> Result:
        """Record one evaluation and write its per-image CSV.

        Args:
            name: Evaluation name (e.g. ``"random_500"``); also the CSV's name.
            evaluated_on: Which images, in words (e.g. ``"ISIC 2018 official validation"``).
            per_image: DataFrame of per-image scores.
            summary: Metric means, pooled scores and ``n_images``.
            reported: The paper's numbers for the same images, each with how it was computed
                (:meth:`lessons_lib.recipes.Recipe.reported_for`); they must be of the run's
                dataset.
            method: The method variant, when it is not the chapter's own (an ablation).
            **details: Kept in the result's ``details``.
        """
        write_with(self.out / f"per_image_{name}.csv", lambda p: per_image.to_csv(p))
        foreign = {r.dataset for r in reported} - {self.params["dataset"]}
        if foreign:
            raise ValueError(
                f"{name}: the paper's numbers for {', '.join(sorted(foreign))} cannot stand "
                f"beside a run on {self.params['dataset']}; pass the recipe's "
                "reported_for(P.dataset, split), which holds only the run's dataset"
            )
        result = Result(name, evaluated_on, dict(summary), list(reported), method, details)
        self.results = [r for r in self.results if r.name != name] + [result]
        return result

    def evaluation(
        self, name: str, compute: Callable[[], tuple[pd.DataFrame, dict, dict[str, np.ndarray]]]
    ) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
        """An evaluation's ``(per_image, summary, thumbnails)``, computed once per run.

        ``compute`` (e.g. ``lambda: evaluate(learn, data, "test", ...)``) runs and its result
        is stored in ``evaluations/<name>/`` (per-image CSV, thumbnails, then the summary last,
        each atomically); a resumed run (:attr:`resumed`) reads a stored result back instead
        of predicting again.
        """
        folder = self.out / "evaluations" / name
        summary_file = folder / "summary.json"
        if self.resumed and summary_file.is_file():
            per_image = pd.read_csv(folder / "per_image.csv", index_col=0)
            with np.load(folder / "thumbnails.npz", allow_pickle=False) as stored:
                small = {key: stored[key] for key in stored.files}
            print(f"evaluation {name!r}: finished by the interrupted run; read back")
            return per_image, json.loads(summary_file.read_text()), small
        per_image, summary, small = compute()
        write_with(folder / "per_image.csv", lambda p: per_image.to_csv(p))
        write_with(folder / "thumbnails.npz", lambda p: _save_npz(p, small))
        write_json(summary_file, summary)
        return per_image, summary, small

    def external_evaluation(
        self,
        dataset: str | None,
        data_dir: str | Path | None,
        method: str | None = None,
        batch_size: int = 8,
    ) -> pd.DataFrame | None:
        """Score the run's final model(s) on every image of a dataset it never trained on
        (:func:`lessons_lib.evaluation.external.evaluate_external`): the result ``external``
        (:meth:`add_result`), with ``details["external"]`` naming the dataset (the leaderboard's
        "external" column), and its mean JA and Dice printed.

        Call it after :meth:`save_predictor`: the images take the path the predictor records,
        the chapter's own. Predicted masks go to ``predictions/external/``.

        Args:
            dataset: The external dataset's key (the ``external_dataset`` parameter); ``None``
                prints how to ask for one and returns ``None``.
            data_dir: Its folder (``external_data_dir``).
            method: As :meth:`add_result`.
            batch_size: Images per forward pass.

        Returns:
            The per-image scores (as the chapter keeps its other evaluations'), or ``None``.

        Raises:
            DataError: ``data_dir`` is the folder this run trained on, or cannot be read.
        """
        from lessons_lib.evaluation.external import evaluate_external, external_title

        if dataset is None:
            print(
                "external validation: none asked for (for example -p external_dataset ph2 "
                "-p external_data_dir <the PH2 folder>)"
            )
            return None
        trained_on = self.params.get("data_dir")
        if trained_on is not None and Path(trained_on).expanduser().resolve() == (
            Path(data_dir).expanduser().resolve()
        ):
            raise DataError(
                "external_data_dir is the dataset this run trained on: an external validation "
                "needs images the model never saw",
                Path(data_dir),
                "pass another dataset's folder as external_data_dir",
            )
        name = "external"
        per_image, summary, _ = self.evaluation(
            name,
            lambda: evaluate_external(
                self.out,
                dataset,
                data_dir,
                save_dir=self.out / "predictions" / name,
                batch_size=batch_size,
            ),
        )
        words = (
            f"external: {external_title(dataset)}, every image ({summary['n_images']}), "
            "none seen in training"
        )
        self.add_result(name, words, per_image, summary, method=method, external=dataset)
        print(f"{words}: mean JA {summary['jaccard']:.3f}, mean Dice {summary['dice']:.3f}")
        return per_image

    def beside_baseline(
        self, data: PreparedData, split: str, per_image: pd.DataFrame
    ) -> pd.DataFrame:
        """This run's per-image mean Jaccard on ``split`` beside the classical baseline's
        (:class:`lessons_lib.baseline.ClassicalBaseline`, the course's thresholding floor) on
        the very same images, scored the same way (at original size, the challenge metrics).

        The baseline segments each image the network was given (the prepared cache) and its
        masks are scored against the original masks, as :func:`lessons_lib.evaluation.evaluate`
        scores the network's. Its per-image scores are written as
        ``per_image_baseline_<split>.csv`` and its summary goes into ``metrics.json``
        (``details.baseline``, with the gap); it is not one of the run's results (the leaderboard
        lists methods, and the baseline is none of this chapter's). A resumed run reads a stored
        baseline back (:meth:`evaluation`).

        Args:
            data: The prepared data the run evaluated on.
            split: The evaluated split (``"test"`` where the dataset has one).
            per_image: The run's per-image scores on it (indexed by image id).

        Returns:
            One row per method (this chapter, the baseline, the gap): images, mean and median
            per-image Jaccard, and the share of images where the chapter's is higher.
        """
        from lessons_lib.baseline import ClassicalBaseline

        ids = [str(i) for i in per_image.index]
        missing = sorted(set(ids) - {e["id"] for e in data.entries(split)})
        if missing:
            raise ValueError(
                f"{len(missing)} of the {len(ids)} scored images are not in the {split!r} split "
                f"(e.g. {missing[0]}): the baseline would score other images; "
                "pass the split the scores come from"
            )
        baseline, _, _ = self.evaluation(
            f"baseline_{split}", lambda: ClassicalBaseline().evaluate(data, split, ids=ids)
        )
        write_with(self.out / f"per_image_baseline_{split}.csv", lambda p: baseline.to_csv(p))
        ours = per_image["jaccard"].astype(float)
        floor = baseline["jaccard"].astype(float).reindex(ids)
        ours.index = floor.index
        mean, floor_mean = float(ours.mean()), float(floor.mean())
        better = float((ours > floor).mean())
        summary = {
            "split": split,
            "n_images": len(ours),
            "jaccard": round(mean, 4),
            "baseline_jaccard": round(floor_mean, 4),
            "gap": round(mean - floor_mean, 4),
            "share_better": round(better, 4),
        }
        self.baseline[split] = summary
        # printed from the unrounded means, as the table below rounds them (rounding the
        # 4-decimal record again could print 0.740 above a table's 0.739)
        print(
            f"{split}, {len(ours)} images: this chapter's mean JA {mean:.3f} | "
            f"classical baseline {floor_mean:.3f} on the same images | "
            f"gap {mean - floor_mean:+.3f} (better on {better:.0%} of the images)"
        )
        return pd.DataFrame(
            {
                "images": [len(ours), len(ours), None],
                "mean JA": [mean, floor_mean, mean - floor_mean],
                "median JA": [ours.median(), floor.median(), ours.median() - floor.median()],
            },
            index=["this chapter", "classical baseline", "gap"],
        ).round(3)

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

    def save_predictor(
        self,
        learn: Any,
        data: PreparedData,
        weights: str | Path | Sequence[str | Path] = "final",
        **how: Any,
    ) -> Path:
        """Record how this run predicts, as ``predictor.json``, for
        ``python -m lessons_lib predict --run <out_dir>`` (:mod:`lessons_lib.evaluation.predict`).

        Args:
            learn: The Learner (or the ensemble's Learners) the chapter evaluated with.
            data: The prepared data it evaluated on.
            weights: The weights saved by :meth:`save_weights`, by name (one per Learner),
                or paths.
            **how: What the chapter passed to ``evaluate``: ``resize``, ``postprocess``,
                ``postprocess_at``, ``threshold``.
        """
        from lessons_lib.evaluation.predict import predictor_spec, write_predictor

        names = [weights] if isinstance(weights, (str, Path)) else list(weights)
        files = [
            self.out / "models" / f"{w}.pth" if isinstance(w, str) and "/" not in w else Path(w)
            for w in names
        ]
        spec = predictor_spec(learn, data, files if len(files) > 1 else files[0], **how)
        return write_predictor(self.out, spec)

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
        if self.resumed:
            details = {"resumed": True, **details}
        if self.baseline:
            details = {"baseline": self.baseline, **details}
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
            peak_rss_gb=peak_rss_gb(),
            details=details,
        )
        resumes = [*self.out.glob("models/*.resume.*"), *self.out.glob("*/models/*.resume.*")]
        if self.resumed:  # where: each stage an interrupted run left unfinished, and after
            resumed_from = {}  # which of its epochs training went on
            for path in (p for p in resumes if p.name.endswith(".resume.json")):
                try:
                    after = json.loads(path.read_text()).get("resumed_after") or []
                except (OSError, ValueError, AttributeError):
                    continue  # an unreadable state: nothing to say
                if after:
                    stage = path.relative_to(self.out).as_posix().removesuffix(".resume.json")
                    resumed_from[stage.replace("models/", "")] = after
            record.details = {"resumed_from": resumed_from, **record.details}
        path = record.write(self.out / "metrics.json")
        for resume in resumes:
            resume.unlink()  # the run is complete: nothing is left to resume
        _release_run_folder(self.out, remove=True)
        return path
