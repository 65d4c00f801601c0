"""Training on several GPUs of one machine: fastai's distributed data parallel training
(PyTorch ``DistributedDataParallel`` through Hugging Face ``accelerate``), chosen by a
chapter's ``n_gpus``.

:func:`fit_distributed` runs a training function (a chapter's stage) in ``n`` processes, one
per GPU, and brings the result back into the notebook's Learner; the rest of the chapter
(data, evaluation, figures, ``metrics.json``) runs once, in the notebook's process.

How it works
------------
From a notebook (or papermill, which runs a chapter in one kernel), :func:`fit_distributed`
starts ``n`` worker processes (PyTorch's ``start_processes``) on this machine. Each joins a
process group (NCCL on GPUs, gloo on a CPU), wraps the model in ``DistributedDataParallel``
and its data loaders in a ``DistributedDL`` (each process trains on its share of every epoch)
through :func:`distributed_context`, and calls the training function. The main process
(rank 0) alone writes files: the training path's callbacks skip their writes when fastai's
``rank_distrib()`` is not 0. When the workers are done, rank 0's model weights, trainable
flags, optimiser state and fastai ``Recorder`` are loaded into the notebook's Learner, and the
training function's return value (rank 0's) is returned.

The workers start by ``fork`` when this process has not initialised CUDA (a CPU, or a GPU
notebook that has not used the GPU yet) and PyTorch runs on one CPU thread: they inherit the
Learner and the training function in memory (a child forked from a process whose OpenMP pool
holds several threads can hang, so then they are spawned). A chapter has always initialised
CUDA before it trains (fastai's data loaders ask for the current device, the environment
report reads the GPU's properties), and CUDA cannot
be used in a forked child of such a process, so on a GPU the workers start by ``spawn``: the
Learner and the training function are serialised with ``cloudpickle`` (closures and
notebook-defined functions included) and loaded, on the CPU, by every worker. A Learner that
cannot be pickled (a lambda inside a fastai transform is fine with cloudpickle; an open file
or a lock is not) is an error saying so.

The batch size of the data loaders is **per process**: ``n`` processes train on batches of
``n * bs`` images in all, and an epoch has ``1/n`` of the iterations. To keep a paper's batch
size ``B`` on ``n`` GPUs, build the loaders with ``bs = B // n``. When the validation set does
not divide into ``n`` equal shares, fastai repeats a few of its images to even them out: the
validation loss counts those twice (scores gathered per batch, as the pooled scores are, drop
them again).

Outside a notebook
------------------
Any Python process can call :func:`fit_distributed`: papermill (the course's route, one
kernel for the whole chapter), or the chapter exported as a script (``jupyter nbconvert --to
script``) and run with ``python``; with ``spawn`` (GPUs) such a script must keep its code under
``if __name__ == "__main__":``, as Python's ``multiprocessing`` requires, since spawned
processes import the main module.

Under a launcher (``torchrun --nproc_per_node N train.py``, or ``accelerate launch
--multi_gpu --num_processes N train.py`` on GPUs) every process runs the whole script, and
:func:`fit_distributed` trains in the launcher's process group (``WORLD_SIZE`` is set)
without starting processes of its own. That suits a script that only trains: once
``WORLD_SIZE`` is set, fastai gathers values across the processes in every ``fit``,
``validate``, ``lr_find`` and ``get_preds``, so a chapter's other steps (the LR finder, the
evaluation) fail or count images twice there, and every process would write the run's files.
Chapters are therefore not run under a launcher.

On a machine without GPUs, ``n_gpus > 1`` starts that many CPU processes (gloo): slow, and
meant for testing the distributed path.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib, to_device

from lessons_lib.atomic import atomic_path

START_METHODS = ("auto", "fork", "spawn")
"""How :func:`fit_distributed` starts its processes: ``auto`` is ``fork`` unless this process
has initialised CUDA or runs PyTorch with several CPU threads (a forked child can hang in
OpenMP), then ``spawn``."""

_HANDBACK = "handback.pt"  # rank 0's result, in the launch's private folder
_PAYLOAD = "payload.pt"  # the Learner and the training function, for spawned workers


def resolve_n_gpus(n_gpus: int | None) -> int:
    """Check a chapter's ``n_gpus`` against this machine.

    Args:
        n_gpus: Processes to train with (one per GPU); ``None`` means 1, as everywhere in the
            course (a chapter's ``n_gpus=None`` is its profile's value, 1): several GPUs are
            always asked for by number, because the batch size is per GPU.
            On a machine without GPUs, more than 1 means that many CPU processes (for
            testing; a warning says it is slow).

    Returns:
        The number of processes.

    Raises:
        ValueError: ``n_gpus`` is not a positive integer, or is more than this machine's GPUs
            (the message names both numbers).
    """
    if n_gpus is None:
        return 1
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer (None means 1), not {n_gpus!r}")
    if torch.cuda.is_available():
        available = torch.cuda.device_count()
        if n_gpus > available:
            raise ValueError(
                f"n_gpus={n_gpus} but this machine has {available} GPU(s) "
                f"(torch.cuda.device_count()); pass n_gpus={available} or fewer"
            )
    elif n_gpus > 1:
        warnings.warn(
            f"n_gpus={n_gpus} on a machine without a GPU: training runs in {n_gpus} CPU "
            "processes (gloo), which is slow and meant for testing the distributed path; "
            "pass n_gpus=1 to train in this process",
            stacklevel=2,
        )
    return n_gpus


class DeviceDistributedDL(DistributedDL):
    """fastai's ``DistributedDL`` (each process gets its share of the items, in rank 0's
    shuffled order), broadcasting that order on a device the backend supports: fastai's own
    always uses a CUDA tensor, which fails under gloo on a CPU."""

    def _broadcast(self, t: list[int], rank: int) -> list[int]:
        on_cpu = torch.distributed.get_backend() == "gloo"
        tensor = torch.tensor(t, dtype=torch.long, device="cpu" if on_cpu else self.device)
        torch.distributed.broadcast(tensor, rank)
        return tensor.cpu().tolist()


class AcceleratedTrainer(DistributedTrainer):
    """fastai's ``DistributedTrainer`` (``accelerate`` wraps the model in
    ``DistributedDataParallel`` for each fit) with :class:`DeviceDistributedDL` loaders."""

    def _wrap_dl(self, dl: Any) -> Any:
        if isinstance(dl, DistributedDL):
            return dl
        return DeviceDistributedDL(dl, device=self.learn.model.device)


def in_distributed_context(learn: Learner) -> bool:
    """Whether ``learn`` is inside :func:`distributed_context` (or fastai's ``distrib_ctx``)."""
    return any(isinstance(cb, DistributedTrainer) for cb in learn.cbs)


@contextmanager
def distributed_context(
    learn: Learner,
    backend: str | None = None,
    sync_bn: bool | None = None,
    timeout: float | None = None,
) -> Iterator[Learner]:
    """Train ``learn`` in the process group of this process (``RANK``, ``WORLD_SIZE``, ...
    set by :func:`fit_distributed` or a launcher): fastai's ``distrib_ctx`` for a GPU or a CPU.

    fastai's ``distrib_ctx(in_notebook=True)`` sets a CUDA device and an NCCL group itself,
    which fails on a CPU; here ``accelerate`` makes the group (NCCL on GPUs, gloo on a CPU),
    the data loaders move to this process's device, and only rank 0 shows progress.

    Args:
        learn: The Learner.
        backend: ``torch.distributed`` backend; default NCCL on GPUs, gloo on a CPU.
        sync_bn: Synchronise batch-norm statistics across processes (``SyncBatchNorm``);
            default on with GPUs; a CPU cannot (PyTorch's ``SyncBatchNorm`` needs a GPU).
        timeout: Seconds a collective operation may wait for the other processes
            (``accelerate``'s default when ``None``: 30 minutes, 10 with NCCL).

    Returns:
        The context manager (yields ``learn``).
    """
    from accelerate.utils import InitProcessGroupKwargs

    cuda = torch.cuda.is_available()
    if not cuda and backend not in (None, "gloo", "mpi"):
        raise ValueError(f"backend {backend!r} needs a GPU; on a CPU use gloo (backend=None)")
    if sync_bn is None:
        sync_bn = cuda
    elif sync_bn and not cuda:
        raise ValueError("sync_bn=True needs GPUs (PyTorch's SyncBatchNorm); pass None or False")
    group: dict[str, Any] = {}
    if backend is not None:
        group["backend"] = backend
    if timeout is not None:
        group["timeout"] = timedelta(seconds=timeout)
    kwargs: dict[str, Any] = {"kwargs_handlers": [InitProcessGroupKwargs(**group)]}
    if not cuda:
        kwargs["cpu"] = True  # accelerate's MULTI_CPU (gloo); same as ACCELERATE_USE_CPU=1
    trainer = AcceleratedTrainer(sync_bn=sync_bn, **kwargs)  # joins the process group
    device = trainer.accelerator.device  # fastai's default device is GPU 0 for every rank
    learn.dls.to(torch.device("cpu") if device.type == "cpu" else device)  # not accelerate's cpu:0
    learn.add_cb(trainer)
    progress = (
        [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)] if rank_distrib() else []
    )
    learn.remove_cbs(progress)
    try:
        yield learn
    finally:
        learn.remove_cb(trainer)
        learn.add_cbs(progress)


@dataclass
class _Job:
    """What every worker of one :func:`fit_distributed` call needs."""

    folder: Path
    n_processes: int
    port: int
    seed: int
    backend: str | None
    sync_bn: bool | None
    timeout: float | None
    deterministic: tuple[bool, bool, bool, bool]  # cudnn deterministic, benchmark; algorithms
    nccl_p2p: bool  # False: RTX 40xx GPUs on an old driver, where NCCL's P2P/IB transfers hang
    learn: Learner | None = None  # fork: inherited in memory; spawn: in the payload file
    fit: Callable[[Learner], Any] | None = None


def fit_distributed(
    learn: Learner,
    n_processes: int | None,
    fit: Callable[[Learner], Any],
    *,
    backend: str | None = None,
    sync_bn: bool | None = None,
    start_method: str = "auto",
    timeout: float | None = None,
) -> Any:
    """Run ``fit(learn)`` in ``n_processes`` processes (one per GPU) and keep rank 0's result.

    * ``n_processes`` 1 (or ``None`` on a machine with at most one GPU): ``fit(learn)`` here.
    * Inside a launcher's process group (``torchrun``, ``accelerate launch``: ``WORLD_SIZE``
      is set) or inside a worker: ``fit(learn)`` here, in that group.
    * Otherwise ``n_processes`` workers train (see the module's docstring), then rank 0's
      model weights, trainable flags, optimiser state and ``Recorder`` (losses, learning
      rates, values) are loaded into ``learn``. Callbacks of ``learn`` see nothing of the
      workers' epochs: whatever else the caller needs (e.g. history rows) ``fit`` returns.

    Args:
        learn: The Learner (not changed until the workers are done).
        n_processes: Processes: :func:`resolve_n_gpus` checks it.
        fit: Trains the Learner it is given (e.g. a ``functools.partial`` of
            :func:`~lessons_lib.training.fit_stage`); its return value must pickle.
        backend: ``torch.distributed`` backend (default NCCL on GPUs, gloo on a CPU).
        sync_bn: Synchronised batch norm (default on with GPUs; a CPU cannot).
        start_method: :data:`START_METHODS`.
        timeout: Seconds a process waits for the others in a collective operation.

    Returns:
        What ``fit`` returned in rank 0.

    Raises:
        ValueError: a bad ``n_processes``, ``start_method`` or ``backend``.
        RuntimeError: ``fork`` asked for after CUDA was initialised, a Learner or ``fit`` that
            cannot be pickled for ``spawn``, or a worker killed by a signal.
        Exception: the exception a worker raised (its traceback is in the notes).
    """
    if start_method not in START_METHODS:
        raise ValueError(
            f"unknown start_method {start_method!r}; valid: {', '.join(START_METHODS)}"
        )
    if in_distributed_context(learn):
        return fit(learn)
    world = num_distrib()
    if world > 1:  # this process is one of a launcher's
        if n_processes is not None and n_processes not in (1, world):
            raise ValueError(
                f"n_gpus={n_processes} but the launcher started {world} processes "
                f"(WORLD_SIZE={world}); pass n_gpus={world} or launch {n_processes} processes"
            )
        with distributed_context(learn, backend, sync_bn, timeout):
            return fit(learn)
    n = resolve_n_gpus(n_processes)
    if n <= 1:
        return fit(learn)
    method = _start_method(start_method)
    folder = Path(tempfile.mkdtemp(prefix="lessons-distributed-"))
    try:
        job = _Job(
            folder=folder,
            n_processes=n,
            port=free_port(),
            seed=int(torch.randint(0, 2**31 - 1, ()).item()),
            backend=backend,
            sync_bn=sync_bn,
            timeout=timeout,
            deterministic=(
                torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark,
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            ),
            nccl_p2p=_nccl_p2p_works(),
        )
        if method == "fork":
            job.learn, job.fit = learn, fit
        else:
            _write_payload(folder / _PAYLOAD, learn, fit)
        _launch(job, method)
        return _hand_back(learn, folder / _HANDBACK)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    """A TCP port of this machine that is free now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nccl_p2p_works() -> bool:
    """accelerate's ``notebook_launcher`` check (``nvidia-smi``, CUDA stays uninitialised)."""
    if not torch.cuda.is_available():
        return True
    from accelerate.utils import check_cuda_p2p_ib_support

    return check_cuda_p2p_ib_support()


def _start_method(start_method: str) -> str:
    cuda_used = torch.cuda.is_initialized()
    if start_method == "auto":
        # a child forked from a process whose OpenMP pool holds several threads can hang in its
        # first parallel region (seen: children stuck in Module.to); fork only single-threaded
        return "spawn" if cuda_used or torch.get_num_threads() > 1 else "fork"
    if start_method == "fork" and cuda_used:
        raise RuntimeError(
            "cannot fork training processes: this process has already initialised CUDA (a "
            "forked child cannot use it). Use start_method='spawn' (or 'auto'), or restart the "
            "kernel and train before anything touches the GPU"
        )
    return start_method


def _write_payload(path: Path, learn: Learner, fit: Callable[[Learner], Any]) -> None:
    """Serialise the Learner and the training function for spawned workers (tensors load on
    the CPU there: ``torch.load(map_location="cpu")``).

    A data loader whose iteration was cut short (``lr_find`` stops mid-epoch) keeps its
    dataset iterator, a generator, which cannot be pickled; fastai drops it at the end of
    every full iteration and makes a new one at the next, so it is dropped here too.
    """
    for dl in [*learn.dls.loaders, getattr(learn, "dl", None)]:
        if hasattr(dl, "it"):
            del dl.it
    try:
        with atomic_path(path) as tmp:
            torch.save((learn, fit), tmp, pickle_module=cloudpickle)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise RuntimeError(
            f"cannot send the Learner and the training function to spawned processes: {err}. "
            "Make them picklable (no open files, locks or generators in the Learner, its "
            "callbacks or the function's arguments); or, on a GPU (where spawning is needed "
            "once this process has initialised CUDA), restart the kernel and train before "
            "anything uses the GPU (then the processes are forked)"
        ) from err


def _launch(job: _Job, method: str) -> None:
    """Start the workers and wait for them; a worker's exception is raised here."""
    from torch.multiprocessing import start_processes
    from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException

    print(f"Training in {job.n_processes} processes ({_device_kind()}, {method})")
    sys.stdout.flush()
    sys.stderr.flush()
    context = start_processes(
        _worker, args=(job,), nprocs=job.n_processes, join=False, start_method=method
    )
    try:
        while not context.join():
            pass
    except ProcessRaisedException as err:
        raise _worker_error(job.folder, err.error_index) from err
    except ProcessExitedException as err:
        hint = (
            "; out of memory is the usual cause of a killed process: lower the batch size"
            if err.signal_name == "SIGKILL"
            else " (its output above says why)"
        )
        raise RuntimeError(
            f"training process {err.error_index} of {job.n_processes} stopped: {err}{hint}"
        ) from err
    finally:
        for process in context.processes:
            if process.is_alive():  # Ctrl-C, or an error in the parent
                process.terminate()
        for process in context.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
        for name in context.error_files:  # PyTorch leaves a failed process's file in /tmp
            Path(name).unlink(missing_ok=True)


def _device_kind() -> str:
    return "GPUs, NCCL" if torch.cuda.is_available() else "CPU, gloo"


def _worker(index: int, job: _Job) -> None:
    """One training process: join the group, train, and (rank 0) hand the result back."""
    os.environ.update(
        RANK=str(index),
        LOCAL_RANK=str(index),
        WORLD_SIZE=str(job.n_processes),
        LOCAL_WORLD_SIZE=str(job.n_processes),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(job.port),
    )
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo picks by host name otherwise
    if not job.nccl_p2p:
        os.environ.setdefault("NCCL_P2P_DISABLE", "1")
        os.environ.setdefault("NCCL_IB_DISABLE", "1")
    try:
        if job.learn is None:
            learn, fit = torch.load(job.folder / _PAYLOAD, map_location="cpu", weights_only=False)
        else:
            learn, fit = job.learn, job.fit
        _seed(job.seed + index, job.deterministic)
        with distributed_context(learn, job.backend, job.sync_bn, job.timeout):
            result = fit(learn)
        if index == 0:
            with atomic_path(job.folder / _HANDBACK) as tmp:
                torch.save(_handback_state(learn, result), tmp)
    except BaseException as err:
        _write_error(job.folder, index, err)
        raise
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _seed(seed: int, deterministic: tuple[bool, bool, bool, bool]) -> None:
    """Independent random streams per process (augmentations differ between processes; the
    shuffled order is rank 0's), and the parent's determinism settings (lost by ``spawn``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    cudnn_deterministic, cudnn_benchmark, algorithms, warn_only = deterministic
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)


def _cpu(obj: Any) -> Any:
    return to_device(obj, "cpu")


def _handback_state(learn: Learner, result: Any) -> dict[str, Any]:
    """What a fit changed in the Learner, on the CPU, for the parent process."""
    opt = learn.opt
    recorder = getattr(learn, "recorder", None)
    recorded = {}
    if recorder is not None:
        for name in ("lrs", "iters", "losses", "values", "metric_names"):
            if hasattr(recorder, name):
                recorded[name] = _cpu(list(getattr(recorder, name)))
    return {
        "result": result,
        "model": {k: v.detach().cpu() for k, v in learn.model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in learn.model.parameters()],
        "opt": None if opt is None else _cpu(opt.state_dict()),
        "frozen_idx": getattr(opt, "frozen_idx", None),
        "recorder": recorded,
    }


def _hand_back(learn: Learner, path: Path) -> Any:
    """Load rank 0's :func:`_handback_state` into ``learn``; return ``fit``'s result."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    learn.model.load_state_dict(state["model"])
    for param, flag in zip(learn.model.parameters(), state["requires_grad"], strict=True):
        param.requires_grad_(flag)
    if state["opt"] is not None:
        if learn.opt is None:
            learn.create_opt()
        device = next(learn.model.parameters()).device
        learn.opt.load_state_dict(to_device(state["opt"], device))
        if state["frozen_idx"] is not None:
            learn.opt.frozen_idx = state["frozen_idx"]
    recorder = getattr(learn, "recorder", None)
    if recorder is not None:
        for name, value in state["recorder"].items():
            setattr(recorder, name, value)
    return state["result"]


def _write_error(folder: Path, rank: int, err: BaseException) -> None:
    """Record a worker's exception for the parent to raise (best effort)."""
    try:
        exception: bytes | None = pickle.dumps(err)
    except Exception:  # an exception that does not pickle is described below
        exception = None
    record = {
        "rank": rank,
        "time": time.time_ns(),
        "exception": exception,
        "traceback": "".join(traceback.format_exception(err)),
    }
    try:
        with atomic_path(folder / f"error-{rank}.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(record))
    except Exception:  # the parent still reports the process's failure
        pass


def _worker_error(folder: Path, failed: int) -> BaseException:
    """The exception to raise for a failed launch: the worker's own (the rank that failed
    first), with its traceback as a note."""
    records = []
    for path in folder.glob("error-*.pkl"):
        try:
            records.append(pickle.loads(path.read_bytes()))
        except Exception:  # an unreadable record: use the others
            continue
    if not records:
        return RuntimeError(f"training process {failed} failed (no error was recorded)")
    records.sort(key=lambda r: (r["rank"] != failed, r["time"]))
    first = records[0]
    err: BaseException | None = None
    if first["exception"] is not None:
        try:
            err = pickle.loads(first["exception"])
        except Exception:  # re-raise as a RuntimeError with the traceback
            err = None
    if not isinstance(err, BaseException):
        return RuntimeError(f"training process {first['rank']} failed:\n{first['traceback']}")
    err.add_note(f"raised in training process {first['rank']}:\n{first['traceback']}")
    return err
