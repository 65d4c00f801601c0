"""The benchmarks' one output format: rows printed as an aligned text table.

A row is ``{"benchmark": str, "value": float, "unit": str, "target": float, "ok": bool}``; a
``target`` of NaN means the row is information, not a requirement.
"""

from __future__ import annotations

import math


def print_table(rows: list[dict]) -> None:
    """Print benchmark rows as an aligned text table (values to 4 significant digits)."""
    width = max(len(r["benchmark"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  {'unit':<9}  {'target':>7}  ok")
    for r in rows:
        target = "" if math.isnan(r["target"]) else f"{r['target']:g}"
        ok = "yes" if r["ok"] else "NO"
        print(f"{r['benchmark']:<{width}}  {r['value']:>10.4g}  {r['unit']:<9}  {target:>7}  {ok}")
