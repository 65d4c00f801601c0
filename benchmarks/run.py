"""All speed benchmarks as one table: ``python benchmarks/run.py`` (``make bench``).

Speed and memory targets live here, not in the (untimed) test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import bench_prepare
    import bench_synth
    from table import print_table

    rows = bench_synth.run() + bench_prepare.run()
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
