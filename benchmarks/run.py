"""All speed benchmarks as one table: ``python benchmarks/run.py`` (``make bench``).

Speed and memory targets live here, not in the (untimed) test suite. Each ratio (prepare
against naive decoding, our scorer against the official one) is measured within one run, the
two sides timed in turns, so that it holds on a shared, noisy machine. The exit status is 0
only when every row with a target meets it: the scorer at least 3x the official
``isic-challenge-scoring`` with identical numbers, ``prepare`` at least 5x naive decoding, and
the synthetic generator's rates. The input-pipeline and model rows are measurements without
targets (workers each chapter needs, CPU inference against this machine's matmul speed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import bench_models
    import bench_pipeline
    import bench_prepare
    import bench_score
    import bench_synth
    from table import print_table

    rows = []
    for bench in (bench_synth, bench_prepare, bench_score, bench_pipeline, bench_models):
        print(f"running {bench.__name__} ...", file=sys.stderr, flush=True)
        rows += bench.run()
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
