"""lessons_lib.parallel: ordered results, the first error stops the pool, Ctrl-C is the parent's."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from lessons_lib.parallel import chunk_size, parallel_map


def _square(x: int) -> int:
    time.sleep(0.001 * (x % 3))  # workers finish out of order
    return x * x


def _pid(_: object) -> int:
    return os.getpid()


def _sigint_ignored(_: object) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _work_or_fail(path: str) -> str:
    """Fail at once on a name starting with ``fail``; otherwise take a while, then mark it."""
    if Path(path).name.startswith("fail"):
        raise ValueError(f"bad item {path}")
    time.sleep(0.05)
    Path(path).touch()
    return path


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_in_the_order_of_the_items(workers: int) -> None:
    items = list(range(50))
    assert parallel_map(_square, items, workers, max_chunk=3) == [x * x for x in items]


def test_workers_are_other_processes_that_ignore_ctrl_c() -> None:
    pids = parallel_map(_pid, range(16), 2, max_chunk=1)
    assert os.getpid() not in pids
    assert all(parallel_map(_sigint_ignored, range(16), 2))


def test_one_worker_or_few_items_run_in_this_process() -> None:
    assert set(parallel_map(_pid, range(10), 1)) == {os.getpid()}
    assert set(parallel_map(_pid, range(3), 4, min_items=4)) == {os.getpid()}
    assert parallel_map(_pid, [], 4) == []
    # in this process nothing is pickled: a lambda works, and its errors are raised as they are
    assert parallel_map(lambda x: x + 1, [1, 2], 1) == [2, 3]
    with pytest.raises(ZeroDivisionError):
        parallel_map(lambda x: 1 / x, [1, 0, 2], 1)


def test_an_error_in_a_worker_reaches_the_caller_and_cancels_pending_work(
    tmp_path: Path,
) -> None:
    n = 60  # 60 x 50 ms = 3 s of work in all, on 2 workers
    items = [str(tmp_path / "fail")] + [str(tmp_path / f"item{i:02d}") for i in range(n)]
    with pytest.raises(ValueError, match="bad item"):
        parallel_map(_work_or_fail, items, 2, max_chunk=1)
    done = sorted(tmp_path.glob("item*"))
    assert len(done) < n // 2  # the items not started were cancelled
    time.sleep(0.3)
    assert sorted(tmp_path.glob("item*")) == done  # and no worker is left running


def test_ctrl_c_cancels_pending_work_and_waits_for_running_work(tmp_path: Path) -> None:
    n = 60
    items = [str(tmp_path / f"item{i:02d}") for i in range(n)]
    stop = threading.Event()

    def ctrl_c_after_the_first_item() -> None:
        # not after a fixed time: on a loaded machine the pool's start alone can take longer
        while not stop.is_set() and not any(tmp_path.glob("item*")):
            time.sleep(0.01)
        if not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C's default action here, whatever the test runner set (its workers may ignore it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=ctrl_c_after_the_first_item)
    try:
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            parallel_map(_work_or_fail, items, 2, max_chunk=1)
    finally:
        stop.set()
        presser.join()
        signal.signal(signal.SIGINT, previous)
    done = sorted(tmp_path.glob("item*"))
    assert 0 < len(done) < n
    time.sleep(0.3)
    assert sorted(tmp_path.glob("item*")) == done  # no worker is left running


def test_spawned_workers() -> None:
    assert parallel_map(_square, range(8), 2, context="spawn") == [x * x for x in range(8)]


def test_chunk_size() -> None:
    assert chunk_size(1000, 4, 8) == 8  # capped
    assert chunk_size(40, 4, 8) == 2  # about four chunks per worker
    assert chunk_size(3, 4, 8) == 1
