"""A chapter run killed mid-stage (power cut, pre-empted GPU) and started again continues.

Chapter 002 (two progressive-resizing sizes, a frozen and an unfrozen stage each) is run by
papermill in a subprocess and killed with SIGKILL, kernel included, once its second stage has
checkpointed an epoch; the same command again must finish the run from there: a complete
``metrics.json``, each finished epoch once in the history, the killed run's rows unchanged. The
``-p`` values (text, as papermill's command line passes them) override the smoke profile's and
leave the others as they were.
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
# The smoke profile with fewer epochs: 1 frozen + 2 unfrozen at 32 px, 1 at 64 px.
PARAMS = {
    "sizes": "[32, 64]",
    "epochs": "[2, 1]",
    "epochs_frozen": "[1, 0]",
    "lr_find_iters": "0",
    "seed": "3",
}
STAGES = {"32px_frozen": 1, "32px": 2, "64px": 1}


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


def test_a_killed_chapter_run_resumes_where_it_stopped(tmp_path: Path) -> None:
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
    params, smoke = record["params"], get_recipe("002_resnet34_unet").profile("smoke")
    assert (params["epochs"], params["epochs_frozen"]) == ([2, 1], [1, 0])
    assert (params["lr_find_iters"], params["seed"], params["sizes"]) == (0, 3, [32, 64])
    assert params["batch_size"] == list(smoke.batch_size)  # not given: the profile's
    assert params["n_valid"] == smoke.n_valid
    final = pd.read_csv(history)
    assert not final.duplicated(["stage", "epoch"]).any()  # no finished epoch trained twice
    for stage, epochs in STAGES.items():
        assert list(final.loc[final["stage"] == stage, "epoch"]) == list(range(epochs)), stage
    done = state["epochs_done"]  # epochs of stage 32px the killed run checkpointed
    before = killed_rows[(killed_rows["stage"] == "32px_frozen") | (killed_rows["epoch"] < done)]
    pd.testing.assert_frame_equal(final.iloc[: len(before)], before.reset_index(drop=True))
    log = (tmp_path / "resumed.ipynb").read_text()
    assert "resuming the unfinished run" in log
    assert "stage '32px_frozen': finished by an earlier run" in log
    assert f"stage '32px': resuming after epoch {done - 1} of {STAGES['32px']}" in log
    assert not list(out.rglob("*.resume.*"))  # a finished run keeps no resume checkpoints
