"""Benchmark of the chapters' networks on this CPU, against its matrix-multiply throughput.

Run it with ``python benchmarks/bench_models.py [chapter ...]``. For each chapter's network
(its recipe's registry arguments in the full profile, random weights), at the profile's largest
input size: parameters, forward FLOPs per image (counted), CPU inference images/s
(``measure_throughput``, batch 1) and the FLOP/s that achieves, as a share of this machine's
fp32 matrix-multiply FLOP/s (the best of a few ``torch.matmul`` of two 2048x2048 matrices). A
share above 100 % is possible: the convolution library may multiply less than the counted FLOPs
(Winograd), and the matmul is not the CPU's absolute peak.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lessons_lib.models.complexity import count_flops, count_parameters, measure_throughput


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s of ``torch.matmul`` of two ``n x n`` matrices (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def run(seconds: float = 3.0, names: list[str] | None = None) -> list[dict]:
    """Rows: the machine's matmul FLOP/s, then per network its inference speed and share.

    Each network is timed for about ``seconds`` (at least 2 passes) after one untimed pass.
    ``names``: chapter ids (default: every chapter).
    """
    from chapters import chapters

    peak = matmul_flops()
    rows = [_row("this CPU: fp32 matmul 2048x2048, all threads", peak / 1e9, "GFLOP/s")]
    for chapter in chapters(names):
        net = chapter.build("cpu")
        size = max((s for s, _ in chapter.stages), key=lambda hw: hw[0] * hw[1])
        shape = (chapter.in_channels, *size)
        flops = count_flops(net, (1, *shape))
        first = measure_throughput(net, shape, 1, 1, 1, device="cpu")["seconds_per_batch"]
        iters = max(2, round(seconds / first))
        speed = measure_throughput(net, shape, 1, iters, 0, device="cpu")["images_per_s"]
        label = (
            f"{chapter.chapter} {size[0]}x{size[1]}: {count_parameters(net) / 1e6:.1f} M "
            f"parameters, {flops / 1e9:.1f} GFLOP/image"
        )
        rows += [
            _row(f"{label}: CPU inference", speed, "images/s"),
            _row(f"{label}: share of matmul FLOP/s", 100 * speed * flops / peak, "%"),
        ]
    return rows


def _row(name: str, value: float, unit: str) -> dict:
    return {"benchmark": name, "value": float(value), "unit": unit, "target": np.nan, "ok": True}


if __name__ == "__main__":
    from chapters import names_from_command_line
    from table import print_table

    print_table(run(names=names_from_command_line(__doc__)))
