"""A chapter run killed mid-stage (power cut, pre-empted GPU) and started again continues, and
ends exactly where the uninterrupted run ends.

Chapter 002 (two progressive-resizing sizes, a frozen and an unfrozen stage each) is run by
papermill in a subprocess at its defaults (the smoke profile) and killed with SIGKILL, kernel
included, once its second stage has checkpointed an epoch; the same command again must finish
the run from there: a complete ``metrics.json`` saying where it resumed, each finished epoch once
in the history, the killed run's rows unchanged, and every number - the training history, each
evaluation's scores and per-image CSV - equal to the last bit to the session's uninterrupted run
of the same chapter at the same defaults (``chapter_runs``): the checkpoints keep every
random-number generator that feeds training, so shuffling, augmentation and dropout go on as if
nothing had happened. The ``-p`` values (text, as papermill's command line passes them) are the
profile's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import REPO

from lessons_lib.recipes import get_recipe

pytestmark = pytest.mark.notebooks

NOTEBOOK = REPO / "notebooks" / "002_resnet34_unet.ipynb"
# The smoke profile's own values, passed as papermill's command line passes them.
PARAMS = {"sizes": "[32, 64]", "seed": "0"}
STAGES = {"32px_frozen": 1, "32px": 3, "64px": 1}


def papermill_command(out: Path, executed: Path) -> list[str]:
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(executed)]
    for key, value in {**PARAMS, "out_dir": str(out)}.items():
        command += ["-p", key, value]
    return command + ["--cwd", str(NOTEBOOK.parent), "--no-progress-bar"]


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL papermill and everything it started (the kernel runs in its own session)."""
    parent = psutil.Process(process.pid)
    for proc in [*parent.children(recursive=True), parent]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=60)


def test_a_killed_chapter_run_resumes_where_it_stopped(
    tmp_path: Path, chapter_runs: dict[str, Path]
) -> None:
    out = tmp_path / "run"
    history = out / "history.csv"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(
        papermill_command(out, tmp_path / "killed.ipynb"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 600
    killed_rows = None
    while time.time() < deadline and first.poll() is None:
        if (out / "models" / "32px.resume.json").is_file():  # an epoch of 32px is saved
            kill_tree(first)
            killed_rows = pd.read_csv(history)
            break
        time.sleep(0.2)
    assert killed_rows is not None, f"the run ended before the kill: {first.stderr.read()!r}"
    assert not (out / "metrics.json").exists()
    state = json.loads((out / "models" / "32px.resume.json").read_text())
    assert not state["finished"] and (out / "models" / "32px.resume.pth").is_file()

    subprocess.run(
        papermill_command(out, tmp_path / "resumed.ipynb"), env=env, check=True, timeout=900
    )
    record = json.loads((out / "metrics.json").read_text())
    assert {r["name"] for r in record["results"]} == {
        "random_split",
        "official_valid",
        "official_test",  # the synthetic data has a test split
    }
    assert record["details"]["resumed"] is True
    done = state["epochs_done"]  # epochs of stage 32px the killed run checkpointed
    assert record["details"]["resumed_from"] == {"32px": [done]}  # where it went on
    params, smoke = record["params"], get_recipe("002_resnet34_unet").profile("smoke")
    assert (params["seed"], params["sizes"]) == (0, [32, 64])
    assert params["batch_size"] == list(smoke.batch_size)  # not given: the profile's
    assert (params["epochs"], params["epochs_frozen"]) == (list(smoke.epochs), [1, 0])
    final = pd.read_csv(history)
    assert not final.duplicated(["stage", "epoch"]).any()  # no finished epoch trained twice
    for stage, epochs in STAGES.items():
        assert list(final.loc[final["stage"] == stage, "epoch"]) == list(range(epochs)), stage
    before = killed_rows[(killed_rows["stage"] == "32px_frozen") | (killed_rows["epoch"] < done)]
    pd.testing.assert_frame_equal(final.iloc[: len(before)], before.reset_index(drop=True))
    log = (tmp_path / "resumed.ipynb").read_text()
    assert "resuming the unfinished run" in log
    assert "stage '32px_frozen': finished by an earlier run" in log
    assert f"stage '32px': resuming after epoch {done - 1} of {STAGES['32px']}" in log
    assert not list(out.rglob("*.resume.*"))  # a finished run keeps no resume checkpoints

    # and nothing differs from the run that was never interrupted, to the last bit
    (whole,) = [p.parent for p in chapter_runs["runs"].glob("002_resnet34_unet/*/metrics.json")]
    pd.testing.assert_frame_equal(final, pd.read_csv(whole / "history.csv"), check_exact=True)
    uninterrupted = json.loads((whole / "metrics.json").read_text())
    assert {k: v for k, v in params.items() if k != "out_dir"} == {
        k: v for k, v in uninterrupted["params"].items() if k != "out_dir"
    }
    assert [(r["name"], r["metrics"]) for r in record["results"]] == [
        (r["name"], r["metrics"]) for r in uninterrupted["results"]
    ]
    for result in record["results"]:
        csv = f"per_image_{result['name']}.csv"
        assert (out / csv).read_bytes() == (whole / csv).read_bytes(), csv
