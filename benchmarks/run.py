"""All speed benchmarks as one table: ``python benchmarks/run.py`` (``make bench``).

Speed and memory targets live here, not in the (untimed) test suite.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def print_table(rows: list[dict]) -> None:
    """Print benchmark rows as an aligned text table."""
    width = max(len(r["benchmark"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  {'unit':<9}  {'target':>7}  ok")
    for r in rows:
        target = "" if math.isnan(r["target"]) else f"{r['target']:g}"
        ok = "yes" if r["ok"] else "NO"
        print(f"{r['benchmark']:<{width}}  {r['value']:>10.1f}  {r['unit']:<9}  {target:>7}  {ok}")


def main() -> int:
    import bench_prepare
    import bench_synth

    rows = bench_synth.run() + bench_prepare.run()
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
