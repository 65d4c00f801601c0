"""One Ctrl-C-safe parallel map over processes, for the library's CPU-bound loops.

Preparing a dataset, checking one, scoring folders of masks and writing synthetic data all
decode or encode images one by one: :func:`parallel_map` spreads them over processes, in chunks.
The rules every one of them needs, written once:

* **Ctrl-C is the parent's.** The workers ignore SIGINT (:func:`ignore_sigint`), so a Ctrl-C in
  a terminal, which reaches the whole process group, does not kill them half-way through a file;
  the parent gets the ``KeyboardInterrupt``.
* **On any exception, pending work is cancelled.** A ``KeyboardInterrupt`` in the parent, or the
  first exception raised by a worker, cancels every chunk not yet started, waits for the few
  that are running (every write in the library is atomic), and then reaches the caller: no
  worker is left running.
* **Small jobs run in this process.** With ``workers <= 1``, or fewer items than
  ``min_items``, the function runs here, without starting a process.

Results come back in the order of the items, whatever order the workers finish in.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import TypeVar

__all__ = ["chunk_size", "ignore_sigint", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def ignore_sigint() -> None:
    """Worker initialiser: Ctrl-C is the parent's to handle (it stops the pool cleanly)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def chunk_size(n_items: int, workers: int, max_chunk: int) -> int:
    """Items per chunk: about four chunks per worker, at most ``max_chunk``, at least 1.

    Args:
        n_items: Items to map.
        workers: Processes.
        max_chunk: Largest chunk; small chunks make a Ctrl-C wait on little work.

    Returns:
        The chunk size.
    """
    return max(1, min(max_chunk, n_items // (4 * max(1, workers))))


def _apply(func: Callable[[T], R], chunk: list[T]) -> list[R]:
    """``func`` of every item of one chunk, in a worker."""
    return [func(item) for item in chunk]


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    *,
    max_chunk: int = 8,
    min_items: int = 2,
    context: str | None = None,
) -> list[R]:
    """``[func(item) for item in items]``, on ``workers`` processes that ignore Ctrl-C.

    Args:
        func: A module-level function (it is pickled by name for the workers).
        items: Picklable arguments, one call each.
        workers: Processes; at most one per item is started. ``<= 1`` runs ``func`` in this
            process.
        max_chunk: Largest number of items a worker takes at once (see :func:`chunk_size`).
        min_items: Fewer items than this run in this process (starting processes would cost
            more than the work).
        context: :mod:`multiprocessing` start method (``"fork"``, ``"spawn"``,
            ``"forkserver"``); default the platform's. ``"spawn"`` starts clean interpreters,
            which a parent holding threads (e.g. PyTorch's) needs, at the cost of importing the
            library again in each worker.

    Returns:
        The results, in the order of ``items``.

    Raises:
        KeyboardInterrupt: Ctrl-C in the parent; chunks not started are cancelled, running
            ones finish, then the pool is shut down.
        Exception: The first exception raised by ``func`` (in any worker), after the same
            cancellation.
    """
    items = list(items)
    workers = min(workers, len(items))
    if workers <= 1 or len(items) < min_items:
        return [func(item) for item in items]
    size = chunk_size(len(items), workers, max_chunk)
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    mp_context = multiprocessing.get_context(context) if context is not None else None
    pool = ProcessPoolExecutor(workers, mp_context=mp_context, initializer=ignore_sigint)
    try:
        futures: list[Future[list[R]]] = [pool.submit(_apply, func, chunk) for chunk in chunks]
        wait(futures, return_when=FIRST_EXCEPTION)  # all done, or one failed: stop at once
        for future in futures:
            if future.done() and future.exception() is not None:
                future.result()  # raises it, with the worker's traceback as its cause
        results = [result for future in futures for result in future.result()]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return results
