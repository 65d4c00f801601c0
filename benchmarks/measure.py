"""Wall time and peak memory of a command and everything it starts.

``python benchmarks/measure.py -- make test`` runs the command and prints its wall time and the
peak, over the run, of the summed proportional set size (PSS) of its process tree, sampled every
half second: the memory the command holds, shared libraries counted once across the processes
that share them (RSS would count PyTorch's libraries once per kernel). A process that lives less
than a sample's interval can be missed. The README's figures for ``make test`` come from here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil

GB = 1024**3


def tree_memory(root: psutil.Process) -> list[tuple[int, str]]:
    """PSS (RSS where the system gives no PSS) of ``root`` and each descendant, in bytes, with
    its command line, largest first."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            found.append((getattr(info, "pss", info.rss), " ".join(proc.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return sorted(found, reverse=True)


def measure(command: list[str], interval: float = 0.5, **popen) -> dict:
    """Run ``command``; return ``{"seconds", "peak_bytes", "returncode", "at_peak"}``
    (``at_peak``: the largest processes at the peak, ``(bytes, command line)``).

    Args:
        command: The command and its arguments.
        interval: Seconds between memory samples.
        **popen: Passed to ``subprocess.Popen`` (``env``, ``cwd``, ``stdout`` ...).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, **popen)
    root = psutil.Process(process.pid)
    peak, at_peak = 0, []
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, at_peak
        while not done.wait(interval):
            processes = tree_memory(root)
            total = sum(size for size, _ in processes)
            if total > peak:
                peak, at_peak = total, processes[:5]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = process.wait()
    done.set()
    sampler.join()
    return {
        "seconds": time.perf_counter() - start,
        "peak_bytes": peak,
        "returncode": returncode,
        "at_peak": at_peak,
    }


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python benchmarks/measure.py -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    result = measure(argv[1:])
    print(
        f"{' '.join(argv[1:])}: {result['seconds'] / 60:.1f} min wall, "
        f"peak memory {result['peak_bytes'] / GB:.2f} GiB (PSS of the process tree), "
        f"exit status {result['returncode']}"
    )
    for size, command in result["at_peak"]:
        print(f"  at the peak: {size / GB:5.2f} GiB  {command[:150]}")
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
