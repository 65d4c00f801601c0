"""Shared fixtures: tiny datasets written on the fly, and real dermoscopy samples.

The synthetic dataset is written and prepared once per test process (``synthetic_root``,
``synthetic_data``); tests that need a dataset of their own (to test the generator, or to
damage one) make it in their ``tmp_path`` instead.

Real samples (a few ISIC 2017, PH2 and HAM10000 images with their masks, in their publishers'
layouts) are not part of the repository: their licences forbid redistribution. Tests that use
them read the folder named by ``LESSONS_SAMPLES`` and skip, saying so, when it is absent.
"""

from __future__ import annotations

import os
import shutil
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
from helpers import SYNTH, SYNTH_PREPARE_SIZE, SYNTH_SEED, write_pair  # noqa: E402
from PIL import Image  # noqa: E402

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
    try:
        pm.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            cwd=str(path.parent),
            progress_bar=False,
            kernel_name="python3",
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def chapter_runs(tmp_path_factory, worker_id: str) -> dict[str, Path]:
    """Every chapter executed once by papermill at its defaults, as ``make book`` would.

    The runs go to ``<tmp>/runs`` (as ``$LESSONS_RUNS``), the executed notebooks to
    ``<tmp>/executed/<chapter>.ipynb``. The papermill tests check them and the book test renders
    them instead of executing the chapters a second time (nbval is the other execution). Under
    pytest-xdist the workers share one set: the first to ask executes it, the others wait.

    Returns:
        ``{"runs": ..., "executed": ...}``.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "chapter_runs"
    runs, executed, done = root / "runs", root / "executed", root / "done"
    with FileLock(f"{root}.lock"):
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            executed.mkdir(parents=True)
            for path in CHAPTERS:
                papermill(path, executed / path.name, {}, env={"LESSONS_RUNS": str(runs)})
            done.write_text("\n".join(p.stem for p in CHAPTERS))
    return {"runs": runs, "executed": executed}
