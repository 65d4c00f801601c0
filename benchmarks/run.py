"""All speed benchmarks as one table: ``python benchmarks/run.py`` (``make bench``).

Speed and memory targets live here, not in the (untimed) test suite. Each ratio (prepare
against naive decoding, our scorer against the official one) is measured within one run, the
two sides timed in turns, so that it holds on a shared, noisy machine. The exit status is 0
only when every row with a target meets it: the scorer at least 3x the official
``isic-challenge-scoring`` with identical numbers, ``prepare`` at least 5x naive decoding, and
the synthetic generator's rates. The input-pipeline and model rows are measurements without
targets (workers each chapter needs, CPU inference against this machine's matmul speed), for
each chapter as its recipe's full profile declares it (``chapters.py``). The smoke rows run each
chapter at its defaults, as a student's first run, against 3 minutes and 2 GiB
(``bench_smoke.py``); ``measure.py`` gives any command's wall time and peak memory (the
README's figures for ``make test``).

``python benchmarks/run.py pipeline models --chapter 002`` runs only the named benchmarks
(synth, prepare, score, pipeline, models, smoke) for only the named chapters (an id such as
``002_resnet34_unet`` or its number).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


BENCHMARKS = ("synth", "prepare", "score", "pipeline", "models", "smoke")
"""The benchmarks, in the order they run (module ``bench_<name>``)."""
PER_CHAPTER = ("pipeline", "models", "smoke")
"""The benchmarks that measure each chapter (their ``run`` takes ``names``)."""


def main(argv: list[str] | None = None) -> int:
    import argparse
    import importlib

    from chapters import chapter_ids
    from table import print_table

    from lessons_lib.recipes import CHAPTERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"{', '.join(BENCHMARKS)}; default: all"
    )
    parser.add_argument(
        "--chapter",
        action="append",
        dest="chapters",
        metavar="CHAPTER",
        help="a chapter id or number (repeatable) for the pipeline, model and smoke rows; "
        "default: every chapter",
    )
    args = parser.parse_args(argv)
    if args.chapters:
        args.chapters = chapter_ids(args.chapters, CHAPTERS, parser)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    rows = []
    for name in args.benchmarks or BENCHMARKS:
        bench = importlib.import_module(f"bench_{name}")
        print(f"running {bench.__name__} ...", file=sys.stderr, flush=True)
        rows += bench.run(names=args.chapters) if name in PER_CHAPTER else bench.run()
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
