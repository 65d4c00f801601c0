"""lessons_lib.training.distributed: training in several processes (2 CPU processes, gloo)."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import ADAM, write_pair

from lessons_lib.atomic import is_temp_name
from lessons_lib.losses import CrossEntropy2d
from lessons_lib.models import build_model
from lessons_lib.training import fit_stage, make_learner, segmentation_dls
from lessons_lib.training.distributed import (
    fit_distributed,
    in_distributed_context,
    resolve_n_gpus,
)

# n_gpus > 1 on a CPU warns that it is slow: expected here
pytestmark = pytest.mark.filterwarnings("ignore:n_gpus=2 on a machine without a GPU")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[list, list]:
    """6 training and 3 validation (image, mask) pairs: 3 does not divide between 2
    processes, so fastai pads the validation set and must drop the repeat again."""
    folder = tmp_path_factory.mktemp("pairs")
    pairs = []
    for i in range(9):
        image, mask = folder / f"{i}.png", folder / f"{i}_mask.png"
        write_pair(image, mask, w=40 + 4 * i, h=30 + 2 * i, seed=i)
        pairs.append((image, mask))
    return pairs[:6], pairs[6:]


def _learner(pairs, out: Path):
    torch.manual_seed(0)
    train, valid = pairs
    dls = segmentation_dls(train, valid, 32, 2, seed=0)
    return make_learner(dls, build_model("lesionseg"), CrossEntropy2d(), out, ADAM)


def _fit_stage_on(n: int, learn, stage: str, **kwargs) -> pd.DataFrame:
    """``fit_stage`` in ``n`` processes: what a chapter's ``n_gpus`` parameter asks for."""
    learn.n_gpus = n
    return fit_stage(learn, stage, **kwargs)


@pytest.fixture
def writes(tmp_path: Path, monkeypatch) -> Path:
    """A log of every file moved into place (``os.replace``, the atomic writer's last step),
    by the process's rank; forked workers inherit the patch."""
    log = tmp_path / "writes.log"
    replace = os.replace

    def logged(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        with open(log, "a") as f:
            f.write(f"{os.environ.get('RANK', 'parent')}\t{os.fspath(dst)}\n")

    monkeypatch.setattr(os, "replace", logged)
    return log


def test_two_processes_train_and_write_once(pairs, tmp_path: Path, writes, monkeypatch) -> None:
    # forked workers, which inherit the patches above (make test runs one thread per worker:
    # fork is then what ``auto`` picks; run alone with more threads, the test asks for it)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    scratch = tmp_path / "scratch"  # the launch's private folder goes here
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    out = tmp_path / "run"
    learn = _learner(pairs, out)
    first = _fit_stage_on(2, learn, "a", epochs=1, lr=1e-3)  # best epoch kept (valid_loss)
    last = _fit_stage_on(2, learn, "b", epochs=1, lr=1e-3, schedule="constant", monitor=None)

    # each stage's epoch once, in the file and in the notebook's Learner
    assert list(first["epoch"]) == [0] and list(last["epoch"]) == [0]
    history = pd.read_csv(out / "history.csv")
    assert list(zip(history["stage"], history["epoch"], strict=True)) == [("a", 0), ("b", 0)]
    assert [r["stage"] for r in learn.history_csv.rows] == ["a", "b"]
    # one checkpoint per stage, nothing half-written, the launch's folder removed
    models = out / "models"
    assert {p.name for p in models.glob("*.pth") if ".resume." not in p.name} == {
        "a.pth",
        "b.pth",
    }
    assert not [p for p in out.rglob("*") if is_temp_name(p.name)]
    assert not list(scratch.iterdir())
    # every file of the run folder was written by the main process (rank 0) alone
    logged = [line.split("\t") for line in writes.read_text().splitlines()]
    run_writes = [(rank, Path(dest)) for rank, dest in logged if Path(dest).is_relative_to(out)]
    assert {dest.name for _, dest in run_writes} >= {"history.csv", "a.pth", "b.pth"}
    assert {rank for rank, _ in run_writes} == {"0"}

    # rank 0's final model came back into the notebook's Learner, and it is the checkpoint
    saved = torch.load(models / "b.pth", weights_only=True)
    state = learn.model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)
    # and so did its recorder (stage b: one epoch at a constant rate)
    assert len(learn.recorder.values) == 1 and learn.recorder.lrs
    assert learn.recorder.lrs == [pytest.approx(1e-3)] * len(learn.recorder.lrs)

    # the checkpoint loads in a one-process run, which scores the validation set as the
    # two processes did together
    fresh = _learner(pairs, tmp_path / "check")
    fresh.model.load_state_dict(saved)
    _, dice, jaccard = fresh.validate()
    assert last["pooled_dice"].item() == pytest.approx(dice, rel=1e-6)
    assert last["pooled_jaccard"].item() == pytest.approx(jaccard, rel=1e-6)


def test_spawned_processes_train_a_pickled_learner(pairs, tmp_path: Path) -> None:
    # spawn is what a GPU notebook uses (CUDA is initialised there): the Learner and the
    # training function travel by cloudpickle, and the workers start from scratch
    out = tmp_path / "run"
    learn = _learner(pairs, out)
    fit = functools.partial(fit_stage, stage="s", epochs=1, lr=1e-3, monitor=None)
    rows = fit_distributed(learn, 2, fit, start_method="spawn")
    assert list(rows["stage"]) == ["s"]
    assert list(pd.read_csv(out / "history.csv")["stage"]) == ["s"]
    saved = torch.load(out / "models" / "s.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in learn.model.state_dict().items())


def test_a_worker_error_is_raised_in_the_notebook(pairs, tmp_path: Path, monkeypatch) -> None:
    scratch = tmp_path / "scratch"  # the launch's folder and PyTorch's error files go here
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    learn = _learner(pairs, tmp_path / "run")
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}

    def fit(learner) -> None:
        assert in_distributed_context(learner)
        if torch.distributed.get_rank() == 0:
            raise KeyError("broken in rank 0")
        torch.distributed.barrier()  # waits for rank 0 forever: the launcher stops it

    with pytest.raises(KeyError, match="broken in rank 0") as info:
        fit_distributed(learn, 2, fit)
    assert any("raised in training process 0" in note for note in info.value.__notes__)
    state = learn.model.state_dict()
    assert all(torch.equal(before[k], state[k]) for k in state)  # the Learner is untouched
    assert not list(scratch.iterdir())


def test_one_process_trains_here(pairs, tmp_path: Path) -> None:
    learn = _learner(pairs, tmp_path / "run")
    seen = []
    assert fit_distributed(learn, 1, lambda learner: seen.append(learner) or "done") == "done"
    assert seen == [learn] and not in_distributed_context(learn)


def test_fork_after_cuda_is_refused_and_spawn_needs_pickling(
    pairs, tmp_path: Path, monkeypatch
) -> None:
    learn = _learner(pairs, tmp_path / "run")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="already initialised CUDA"):
        fit_distributed(learn, 2, lambda learner: None, start_method="fork")
    lock = threading.Lock()  # cannot be pickled, so cannot reach spawned processes
    with pytest.raises(RuntimeError, match="cannot send the Learner"):
        fit_distributed(learn, 2, lambda learner: lock)  # auto: spawn, as CUDA is in use
    with pytest.raises(ValueError, match="unknown start_method"):
        fit_distributed(learn, 2, lambda learner: None, start_method="thread")


def test_a_launchers_process_count_wins(pairs, tmp_path: Path, monkeypatch) -> None:
    learn = _learner(pairs, tmp_path / "run")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun / accelerate launch set it
    with pytest.raises(ValueError, match=r"n_gpus=3 but the launcher started 2 processes"):
        fit_distributed(learn, 3, lambda learner: None)


def test_resolve_n_gpus(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_n_gpus(None) == 1 and resolve_n_gpus(1) == 1
    with pytest.warns(UserWarning, match="2 CPU processes"):
        assert resolve_n_gpus(2) == 2
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            resolve_n_gpus(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_n_gpus(None) == 1 and resolve_n_gpus(2) == 2  # None: 1, never "all"
    with pytest.raises(ValueError, match=r"n_gpus=3 but this machine has 2 GPU"):
        resolve_n_gpus(3)


def test_auto_forks_only_a_single_threaded_process_without_cuda(monkeypatch) -> None:
    from lessons_lib.training.distributed import _start_method

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _start_method("auto") == "fork"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # a forked child can hang in OpenMP
    assert _start_method("auto") == "spawn"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert _start_method("auto") == "spawn"
