"""Shared fixtures: tiny datasets written on the fly, real dermoscopy samples, and each
chapter's one papermill run; the session's determinism check.

The synthetic dataset is written and prepared once per test process (``synthetic_root``,
``synthetic_data``); tests that need a dataset of their own (to test the generator, or to
damage one) make it in their ``tmp_path`` instead.

Real samples (a few ISIC 2017, PH2 and HAM10000 images with their masks, in their publishers'
layouts) are not part of the repository: their licences forbid redistribution. Tests that use
them read the folder named by ``LESSONS_SAMPLES`` and skip, saying so, when it is absent.

Every kernel ``make test`` starts, and why
------------------------------------------
Each chapter's default (smoke) profile runs exactly twice:

* ``chapter_runs`` (below): papermill executes every chapter once, as ``make book`` would
  (6 kernels: 000-004 and data_and_metrics). The papermill tests check these runs and the book
  test renders them instead of executing the chapters again.
* nbval (``--nbval-lax notebooks``): every notebook again, leaderboard included (7 kernels), its
  ``# NBVAL_CHECK_OUTPUT`` cells compared with their committed outputs. Its runs go to
  ``$LESSONS_RUNS`` (a folder of this session, set below); when the session ends the two runs of
  each chapter must agree to the last bit (:func:`pytest_sessionfinish`: the determinism check).

Other parameters, one run for each thing it shows:

* tests/notebooks/test_dry_run.py: each chapter's ``full`` or ``colab`` profile as a dry run
  on small images, one of them at camera size (5).
* tests/notebooks/test_laptop_profile.py: each chapter's ``laptop`` profile as a dry run on the
  real PH2 sample (5, skipped without the samples); chapter 002's also scores the HAM10000
  sample as its external dataset.
* tests/notebooks/test_resume_chapter.py: chapter 002 at its defaults killed mid-stage, then
  resumed (2); the result must equal ``chapter_runs``' uninterrupted run of 002 to the last bit.
* tests/notebooks/test_distributed_chapter.py: chapter 003 on two processes (1).
* tests/notebooks/test_000, _003, _004: one ablation run per chapter that flips all of its
  switches at once (3); 000's two wrong parameters stop the first code cell (1 short kernel).
* tests/test_notebooks.py: nbval on a tampered copy of data_and_metrics, cut after the tampered
  cell (1 short kernel).
* tests/book/test_colab.py: chapter 000's first cells (parameters, the Colab install cell,
  imports, the run folder) in a fresh virtual environment posing as Colab (a Python process,
  no kernel, no training).
* tests/book/test_book.py: the strict book build renders ``chapter_runs`` and executes the
  leaderboard (1); tests/book/test_leaderboard.py: the leaderboard with and without runs (2);
  tests/book/test_runs.py: a two-notebook book built four times (2 one-cell kernels a build that
  executes).
* tests/test_benchmarks.py: ``benchmarks/gpu_check.py --device cpu --tiny`` (no kernel: one
  Python process training each chapter's full-profile network two steps at 64x64, marked
  ``slow``).

The session ends with a table of every chapter run it made (papermill's and nbval's) and its
kernel's peak RAM and wall time, the largest first (:func:`print_notebook_runs`): where the
suite's memory goes is in CI's log.

Two workers share the cores (``make test``: ``-n 2 --dist loadscope``): a notebook's nbval cells
stay together in one kernel, each test module on one worker, and each notebook run of
``tests/notebooks/`` is sent on its own (:func:`pytest_xdist_make_scheduler`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one thread each (also for the kernels they start). Set
    # before anything imports torch: its thread pool is sized then, and a process that forks
    # (the two-process training tests) after starting a pool of several threads can leave its
    # children hanging.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import (  # noqa: E402
    SYNTH,
    SYNTH_PREPARE_SIZE,
    SYNTH_SEED,
    run_differences,
    write_pair,
)
from PIL import Image  # noqa: E402

from lessons_lib import hide_upstream_warnings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("LESSONS_SAMPLES", REPO.parent / "shared" / "data"))


@pytest.fixture
def samples() -> Path:
    """The folder of real dermoscopy samples (``$LESSONS_SAMPLES``), never copied into the repo."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real-data samples not found at {SAMPLES}; set LESSONS_SAMPLES to run it")
    return SAMPLES


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> tuple[Path, Any]:
    """The shared synthetic dataset, generated and prepared by ``chapter.get_data``.

    ``LESSONS_CACHE`` points at a fresh folder of this process's basetemp while it runs (the
    user's cache is untouched; each pytest-xdist worker writes its own copy): the dataset is
    ``<cache>/synthetic/<settings>-seed<seed>``, prepared at ``SYNTH_PREPARE_SIZE`` under
    ``<cache>/prepared``. Read-only for tests: copy it before damaging it.

    Returns:
        ``(root, prepared)``: the dataset root and its ``PreparedData``.
    """
    from lessons_lib import chapter

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LESSONS_CACHE", str(tmp_path_factory.mktemp("lessons_cache")))
        # workers=1: no process pool to start (most of the cost at this size)
        return chapter.get_data(
            "synthetic", None, SYNTH_PREPARE_SIZE, synth=dict(SYNTH), seed=SYNTH_SEED, workers=1
        )


@pytest.fixture(scope="session")
def synthetic_root(synthetic_data) -> Path:
    """The shared synthetic dataset's root: the ISIC 2017 layout, ``synth.json`` included."""
    return synthetic_data[0]


@pytest.fixture
def isic2017_root(tmp_path: Path) -> Path:
    """A 3-split ISIC 2017 layout with the superpixel and metadata files the archive has."""
    root = tmp_path / "isic2017"
    n = 0
    for split in ("Training", "Validation", "Test_v2"):
        for _ in range(3):
            stem = f"ISIC_{n:07d}"
            data = root / f"ISIC-2017_{split}_Data"
            gt = root / f"ISIC-2017_{split}_Part1_GroundTruth"
            write_pair(data / f"{stem}.jpg", gt / f"{stem}_segmentation.png", seed=n)
            Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(data / f"{stem}_superpixels.png")
            n += 1
        (data / f"ISIC-2017_{split}_Data_metadata.csv").write_text("image_id,age\n")
    return root


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CHAPTERS = [nb for nb in NOTEBOOKS if nb.stem != "leaderboard"]  # the leaderboard reads runs


def papermill(path: Path, output: Path, parameters: dict, env: dict | None = None) -> None:
    """Execute a notebook as a user would: papermill, from the notebooks folder.

    ``env`` is set for the kernel (it inherits this process's environment) and restored after.
    """
    import papermill as pm

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    start = time.time()
    try:
        pm.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            cwd=str(path.parent),
            progress_bar=False,
            kernel_name="python3",
        )
        # this notebook's own folder: the other worker may be writing a chapter's run beside it
        out = parameters.get("out_dir")
        runs = Path(out) if out else Path(os.environ["LESSONS_RUNS"]) / path.stem
        log_notebook_runs(runs, start, f"{path.stem} {_short(parameters)}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


NOTEBOOK_RUNS_LOG = "notebook-runs.jsonl"
"""In the session's folder: each notebook run's peak RAM and wall time, printed at the end."""


def _short(parameters: dict) -> str:
    """The parameters a run was given, paths left out (for the session's table)."""
    shown = {k: v for k, v in parameters.items() if not k.endswith(("_dir", "_path"))}
    return " ".join(f"{k}={v}" for k, v in shown.items())[:70] or "(defaults)"


def log_notebook_runs(runs: Path, since: float, label: str) -> None:
    """Append every ``metrics.json`` under ``runs`` written after ``since`` (the kernel's
    :attr:`~lessons_lib.record.RunRecord.peak_rss_gb` and wall time) to the session's log."""
    lines = []
    for metrics in runs.rglob("metrics.json"):
        if metrics.stat().st_mtime >= since:
            record = json.loads(metrics.read_text())
            lines.append(
                json.dumps(
                    {
                        "run": label,
                        "peak_rss_gb": record.get("peak_rss_gb"),
                        "wall_time_s": record.get("wall_time_s"),
                    }
                )
            )
    if lines:  # one short append per run: whole lines, whichever worker writes
        with open(shared_folder() / NOTEBOOK_RUNS_LOG, "a") as log:
            log.write("".join(f"{line}\n" for line in lines))


def shared_folder() -> Path:
    """This session's folder for what the workers share: ``chapter_runs`` and nbval's runs."""
    return Path(os.environ["LESSONS_TEST_SHARED"])


def drop_weights(run: Path) -> None:
    """Delete the model weights under a finished chapter run kept for the session (hundreds of
    MB a run, which no test reads: the determinism check compares scores and histories)."""
    for weights in run.rglob("*.pth"):
        weights.unlink()


class NbvalRunsWeights:
    """Drops the weights of nbval's run of a chapter once its notebook's last cell has run
    (a plugin object: a conftest's own item hooks see only the tests below its folder)."""

    @staticmethod
    def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if type(item).__module__.startswith("nbval") and (
            nextitem is None or nextitem.path != item.path
        ):
            drop_weights(Path(os.environ["LESSONS_RUNS"]) / item.path.stem)


RAM_DISK = Path("/dev/shm")
RAM_DISK_ROOM = 8 * 2**30
"""The free space the RAM disk needs before the suite writes there: its temporary files peaked
at 5.8 GB in CI (a passed test's folder is removed at once; see ``pyproject.toml``)."""


def scratch_folder() -> Path | None:
    """Where the session's temporary files go (pytest's ``tmp_path`` folders, the chapter runs,
    their checkpoints): ``$LESSONS_TEST_TMP`` if set (empty: the system's default), else the
    RAM disk ``/dev/shm`` when it is a mount with :data:`RAM_DISK_ROOM` free, else ``None``
    (the system's default). The notebook runs write checkpoints of hundreds of MB every epoch
    (chapter 004's VGG16 with its momentum: 1.1 GB), and on a virtual machine's disk writing
    them took up to a quarter of a short run's time; in RAM the same code path (atomic
    renames, locks) runs as it would on a disk."""
    chosen = os.environ.get("LESSONS_TEST_TMP")
    if chosen is not None:
        return Path(chosen) if chosen else None
    try:
        roomy = os.path.ismount(RAM_DISK) and shutil.disk_usage(RAM_DISK).free >= RAM_DISK_ROOM
    except OSError:
        return None
    return RAM_DISK if roomy else None


def pytest_configure(config: pytest.Config) -> None:
    """In the main process (the workers and the kernels they start inherit its environment):
    the temporary folder (:func:`scratch_folder`), a folder for this session, and
    ``$LESSONS_RUNS`` and ``$LESSONS_CACHE`` inside it, so that no notebook a test runs writes
    to ``runs/`` or to the user's cache."""
    config.pluginmanager.register(NbvalRunsWeights(), "nbval-runs-weights")
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the main process did it
        return
    scratch = scratch_folder()
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    shared = Path(tempfile.mkdtemp(prefix="lessons-tests-", dir=scratch))
    # Every temporary file of the session inside its folder, removed with it when the session
    # passes: pytest's tmp_path folders, and what a killed kernel or a notebook cut short leaves
    # (a RAM disk keeps leftovers until the machine restarts).
    (shared / "tmp").mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(shared / "tmp")
    os.environ["LESSONS_TEST_SHARED"] = str(shared)
    os.environ["LESSONS_RUNS"] = str(shared / "nbval_runs")  # nbval's kernels inherit it
    # The course's cache (synthetic datasets, prepared images) of every notebook the session
    # runs, inside its folder: the user's ~/.cache/lessons_lib is never written (each session
    # left a prepared copy of its dry runs' data there), and every session starts as cold as a
    # fresh machine's CI.
    os.environ["LESSONS_CACHE"] = str(shared / "cache")
    hide_upstream_warnings(os.environ)  # as the book build does for its kernels


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope``, with one change: each test of ``tests/notebooks/`` is a unit of its
    own (a long notebook run; the dry runs of one module would otherwise run one after the
    other on one worker). A notebook's nbval cells stay one unit (they share one kernel, in
    order), and so does every other test module (its module fixtures are made once).

    Written as a scheduler because pytest-xdist 3.8's ``loadgroup`` does not work on pytest 9.2:
    it groups by an ``@group`` suffix it writes into ``item._nodeid``, which pytest 9.2 no
    longer reads, so marked tests were sent apart."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the order of pytest_collection_modifyitems

    class NotebookRunsApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/notebooks/"):
                return nodeid
            return super()._split_scope(nodeid)

    return NotebookRunsApart(config, log)


LONGEST_FIRST = (
    "tests/notebooks/test_dry_run.py",
    "tests/test_notebooks.py",
    "tests/notebooks/",
    "notebooks/",
    "tests/book/",
)
"""Where the longest tests are, in the order the workers should start them: a long test sent
last would end the session on one worker while the other waits."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests first (:data:`LONGEST_FIRST`), each group in its collected order."""

    def rank(item: pytest.Item) -> int:
        found = [i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)]
        return found[0] if found else len(LONGEST_FIRST)

    items.sort(key=rank)


def print_notebook_runs(reporter: Any, shared: Path) -> None:
    """Every notebook run of the session (papermill's, logged by :func:`log_notebook_runs`, and
    nbval's) with its kernel's peak RAM and wall time, the largest first: where the suite's
    memory goes (the README's budget) is in CI's log, as the slowest tests are."""
    rows = []
    log = shared / NOTEBOOK_RUNS_LOG
    if log.is_file():
        rows += [json.loads(line) for line in log.read_text().splitlines() if line]
    for metrics in sorted((shared / "nbval_runs").glob("*/*/metrics.json")):
        record = json.loads(metrics.read_text())
        rows.append(
            {
                "run": f"{metrics.parent.parent.name} (nbval)",
                "peak_rss_gb": record.get("peak_rss_gb"),
                "wall_time_s": record.get("wall_time_s"),
            }
        )
    if not rows:
        return
    reporter.write_sep("=", f"notebook runs: the kernel's peak RAM and wall time ({len(rows)})")
    for row in sorted(rows, key=lambda r: -(r["peak_rss_gb"] or 0)):
        ram = "?" if row["peak_rss_gb"] is None else f"{row['peak_rss_gb']:.2f} GiB"
        reporter.write_line(f"{ram:>10} {row['wall_time_s'] or 0:7.1f} s  {row['run']}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The determinism check, in the main process once every test has run: each chapter that
    both papermill (``chapter_runs``) and nbval ran at its defaults must give the same scores
    and histories to the last bit (same seed, same CPU, same versions; ``chapter.setup`` seeds
    everything and asks PyTorch for deterministic algorithms). A difference fails the session.
    The session's folder is removed when everything passed."""
    if hasattr(session.config, "workerinput"):
        return
    shared = shared_folder()
    first, second = shared / "chapter_runs" / "runs", shared / "nbval_runs"
    compared, problems = [], []
    for metrics in sorted(first.glob("*/*/metrics.json")):
        run = metrics.parent.relative_to(first)
        if (second / run / "metrics.json").is_file():
            compared.append(str(run))
            problems += [f"{run}: {p}" for p in run_differences(first / run, second / run)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        print_notebook_runs(reporter, shared)
    if reporter is not None and compared:
        reporter.write_sep("=", "determinism: papermill's and nbval's runs of each chapter")
        for line in problems or [f"identical: {', '.join(compared)}"]:
            reporter.write_line(line, red=bool(problems))
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"both runs are kept in {shared}")
    elif session.exitstatus == 0:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def chapter_runs(worker_id: str) -> dict[str, Path]:
    """Every chapter executed once by papermill at its defaults, as ``make book`` would.

    The runs go to ``<shared>/chapter_runs/runs`` (as ``$LESSONS_RUNS``; their weights are
    dropped), the executed notebooks to ``.../executed/<chapter>.ipynb``. The papermill tests
    check them, the book test renders them instead of executing the chapters a second time
    (nbval is the other execution), and the session ends comparing them with nbval's runs.
    Under pytest-xdist the workers share the work: each chapter is executed once, by the first
    worker to reach it (one lock a chapter; the second worker walks the chapters from the other
    end), and the others wait for it.

    Returns:
        ``{"runs": ..., "executed": ...}``.
    """
    from filelock import FileLock

    root = shared_folder() / "chapter_runs"
    runs, executed = root / "runs", root / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    order = CHAPTERS if worker_id in ("master", "gw0") else CHAPTERS[::-1]
    for path in order:
        with FileLock(str(root / f"{path.stem}.lock")):
            if not (executed / path.name).is_file():
                out = root / f"{path.stem}.partial.ipynb"  # renamed once the run has finished
                papermill(path, out, {}, env={"LESSONS_RUNS": str(runs)})
                drop_weights(runs / path.stem)
                out.rename(executed / path.name)
    return {"runs": runs, "executed": executed}
