"""The laptop profile, measured: each chapter run as a student runs it, timed, and scored beside
the classical baseline on the same test images.

``python benchmarks/laptop.py --data-dir ~/data/ph2`` runs every paper chapter with
``-p profile laptop`` under papermill (the chapter's whole notebook: preparation, training,
evaluation, figures) on this machine, with its wall time and peak memory
(:func:`measure.measure`), and prints one row per chapter: minutes, peak GiB, the chapter's
per-image mean Jaccard on the test split at original size, the classical baseline's on the very
same images (the chapter's own ``beside_baseline`` cell, read back from ``metrics.json``) and
the gap. ``--record FILE`` also writes the table and every run's parameters (its
``params.json``) to a Markdown file: the chapters quote their laptop numbers from such a record.

Without PH2 at hand, ``--make-proxy ISIC2017_ROOT FOLDER`` builds a stand-in of PH2's size: 200
image/mask pairs drawn with a fixed seed from an ISIC 2017 training set (any resolution), linked
into a ``folder`` layout (``images/``, ``masks/``); run it with ``--dataset folder``, and the
chapters' seeded 70/10/20 split gives it PH2's 140/20/40. Its numbers are not PH2's (ISIC images
are harder, for the baseline too); what they tell is each chapter's time and its gap to the
baseline at PH2's scale.

One run on 40 test images decides little: two runs of the same values can differ by more than
a chapter's gap to the baseline. ``--seeds 0 1 2`` runs each chapter once per seed (``-p seed
S``: another seeded split of a dataset without official splits, PH2's included, and other
starting weights) and ends with a second table, per chapter: the JA, the baseline's and the gap
averaged over the seeds, the lowest and highest gap, and on how many runs the chapter scored
above the baseline. ``--collect`` builds the same tables from finished run folders,
``--from-record`` from the table of a record written before; they refuse to average runs that
differ in anything but the seed.

Options pass anything else through: ``--dataset folder`` for another dataset than PH2,
``--param pretrained=False`` (repeatable) for papermill's ``-p``, ``--chapters 000 001`` for
some chapters only, ``--out`` for where the runs go.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from chapters import chapter_ids
from measure import measure

REPO = Path(__file__).resolve().parents[1]
BUDGET_MIN = 20.0
"""The laptop profile's budget: the whole notebook within 20 minutes on 2 CPU cores."""
BUDGET_THREADS = 2
"""The budget's cores: a run given fewer threads (``OMP_NUM_THREADS=1``, to run two at a time)
is timed, but whether it fits the budget is left open (``-``)."""
SAME_ACROSS_SEEDS_EXCEPT = ("seed", "out_dir")
"""The parameters in which runs averaged over seeds may differ (:func:`over_seeds`)."""


def run_chapter(stem: str, data_dir: str, dataset: str | None, params: dict, out: Path) -> dict:
    """One chapter's laptop run under papermill: its measured cost and its scores."""
    run_dir = out / stem
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(REPO / "notebooks" / f"{stem}.ipynb"),
        str(out / f"{stem}.ipynb"),
        "--cwd",
        str(REPO / "notebooks"),
        "-k",
        "python3",
        "-p",
        "profile",
        "laptop",
        "-p",
        "data_dir",
        data_dir,
        "-p",
        "out_dir",
        str(run_dir),
        "-p",
        "overwrite",
        "True",
    ]
    if dataset:
        command += ["-p", "dataset", dataset]
    for key, value in params.items():
        command += ["-p", key, value]
    with open(out / f"{stem}.log", "w") as log:
        cost = measure(command, stdout=log, stderr=log)
    return read_run(
        run_dir,
        minutes=round(cost["seconds"] / 60, 1),
        peak=round(cost["peak_bytes"] / 2**30, 2),
        returncode=cost["returncode"],
    )


def read_run(
    run_dir: Path, minutes: float | None = None, peak: float | None = None, returncode: int = 0
) -> dict:
    """A laptop run's row, from its folder (``metrics.json`` and ``params.json``): the measured
    minutes and peak memory when given, else the run's own wall time (``wall_time_s``: from the
    chapter's first cell to ``metrics.json``, so without the kernel's start) and no memory; its
    seed, and the threads it had (``cpu_count`` as the run recorded it)."""
    metrics = run_dir / "metrics.json"
    record = json.loads(metrics.read_text()) if metrics.is_file() else None
    params = json.loads((run_dir / "params.json").read_text())
    if minutes is None and record is not None:
        minutes = round(record["wall_time_s"] / 60, 1)
    threads = record["environment"]["cpu_count"] if record else None
    row = {
        "chapter": record["chapter"] if record else run_dir.name,
        "seed": params.get("seed"),
        "threads": threads if threads is not None else "-",
        "minutes": minutes,
        "peak GiB": peak if peak is not None else "-",
        "exit": returncode,
    }
    if returncode == 0 and record is not None:
        beside = record["details"]["baseline"]["test"]
        row.update(
            {
                "test images": beside["n_images"],
                "JA": beside["jaccard"],
                "baseline JA": beside["baseline_jaccard"],
                "gap": beside["gap"],
                "within budget": (
                    minutes is not None and minutes <= BUDGET_MIN
                    if threads is not None and threads >= BUDGET_THREADS
                    else "-"
                ),
            }
        )
        external = [r for r in record["results"] if r["name"] == "external"]
        if external:
            row["external JA"] = round(external[0]["metrics"]["jaccard"], 4)
    row["params"] = params
    return row


def over_seeds(rows: list[dict]) -> list[dict]:
    """Per chapter with finished runs on two or more seeds: its test JA, the baseline's on the
    same images and the gap, each averaged over the seeds (several runs of one seed averaged
    first, so that each split counts once), the lowest and highest gap of any run, and on how
    many runs the chapter scored above the baseline.

    Raises:
        ValueError: a chapter's runs differ in a parameter other than
            :data:`SAME_ACROSS_SEEDS_EXCEPT` (averaging them would mix settings).
    """
    by_chapter: dict[str, list[dict]] = {}
    for row in rows:
        if row["exit"] == 0 and "gap" in row:
            by_chapter.setdefault(row["chapter"], []).append(row)
    summary = []
    for chapter, runs in by_chapter.items():
        by_seed: dict[Any, list[dict]] = {}
        for run in runs:
            by_seed.setdefault(run["seed"], []).append(run)
        if len(by_seed) < 2:
            continue
        keys = {k for r in runs for k in r["params"]} - set(SAME_ACROSS_SEEDS_EXCEPT)
        differ = sorted(k for k in keys if len({repr(r["params"].get(k)) for r in runs}) > 1)
        if differ:
            raise ValueError(
                f"{chapter}: the runs differ in {', '.join(differ)}, not only in the seed; "
                "summarise runs of the same values (collect them apart)"
            )

        gaps = [r["gap"] for r in runs]
        summary.append(
            {
                "chapter": chapter,
                "seeds": " ".join(str(s) for s in sorted(by_seed)),
                "runs": len(runs),
                "mean JA": _mean_over_seeds(by_seed, "JA"),
                "mean baseline JA": _mean_over_seeds(by_seed, "baseline JA"),
                "mean gap": _mean_over_seeds(by_seed, "gap"),
                "lowest gap": min(gaps),
                "highest gap": max(gaps),
                "above the baseline": f"{sum(g > 0 for g in gaps)} of {len(gaps)} runs",
            }
        )
    return summary


def _mean_over_seeds(by_seed: dict[Any, list[dict]], column: str) -> float:
    """``column`` averaged over each seed's runs, then over the seeds."""
    per_seed = [sum(r[column] for r in runs) / len(runs) for runs in by_seed.values()]
    return round(sum(per_seed) / len(per_seed), 4)


def read_table(text: str) -> list[dict]:
    """The rows of the runs' table in a record that ``--record`` wrote (the first table whose
    header starts ``| chapter | seed |``), typed as :func:`read_run` makes them, without the
    parameters (a row's ``params`` is ``{}``: a record's rows are runs of one profile's values).
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("| chapter | seed |")]
    if not starts:
        raise ValueError("no table of runs (a header starting '| chapter | seed |')")
    header = [c.strip() for c in lines[starts[0]].strip("|").split("|")]
    typed = {"seed": int, "threads": int, "exit": int, "test images": int}
    typed |= dict.fromkeys(
        ("minutes", "peak GiB", "JA", "baseline JA", "gap", "external JA"), float
    )
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        row: dict[str, Any] = dict(zip(header, cells, strict=True))
        for column, value in row.items():
            if value in ("True", "False"):
                row[column] = value == "True"
            elif column in typed and value not in ("", "-"):
                row[column] = typed[column](value)
        rows.append({**row, "params": {}})
    return rows


def make_proxy(isic2017: Path, folder: Path, n: int = 200, seed: int = 0) -> Path:
    """``n`` pairs of an ISIC 2017 training set, drawn with ``seed``, linked into ``folder`` in
    the ``folder`` layout (the PH2-sized stand-in described above)."""
    import random

    from lessons_lib.data import find_pairs

    pairs = sorted(find_pairs(isic2017, "isic2017", "train"))
    random.Random(seed).shuffle(pairs)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    for image, mask in pairs[:n]:
        (folder / "images" / image.name).symlink_to(image.resolve())
        (folder / "masks" / mask.name).symlink_to(mask.resolve())
    return folder


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (parameters left out)."""
    columns = [c for c in rows[0] if c != "params"]
    for row in rows[1:]:
        columns += [c for c in row if c not in columns and c != "params"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the dataset folder (PH2 by default)")
    parser.add_argument("--dataset", help="the dataset's key when it is not the profile's ph2")
    parser.add_argument("--param", action="append", default=[], help="papermill -p, as k=v")
    parser.add_argument("--chapters", nargs="*", help="chapter numbers or ids, e.g. 000 001 (all)")
    parser.add_argument("--out", default="runs/laptop-benchmark", help="where the runs go")
    parser.add_argument("--record", help="also write the table and parameters to this file")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="run each chapter once per seed (-p seed S) and summarise the gap over them",
    )
    parser.add_argument(
        "--collect",
        nargs="*",
        help="no runs: read these finished run folders instead (the chapter's own wall time)",
    )
    parser.add_argument(
        "--from-record",
        metavar="RECORD",
        help="no runs: read the table of runs of a record --record wrote (and summarise it)",
    )
    parser.add_argument(
        "--make-proxy",
        nargs=2,
        metavar=("ISIC2017_ROOT", "FOLDER"),
        help="no runs: build a PH2-sized stand-in from an ISIC 2017 training set",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.make_proxy:
        made = make_proxy(Path(args.make_proxy[0]).expanduser(), Path(args.make_proxy[1]))
        print(f"{made}: 200 pairs in the folder layout (use --dataset folder)")
        return 0
    from lessons_lib.recipes import CHAPTERS

    named = chapter_ids(args.chapters, CHAPTERS, parser) if args.chapters else CHAPTERS
    stems = [s for s in CHAPTERS if s in named]
    params = dict(p.split("=", 1) for p in args.param)
    if args.seeds and "seed" in params:
        parser.error("--seeds and --param seed=... both set the seed: give one of them")
    out = Path(args.out).expanduser().resolve()
    rows = [read_run(Path(folder)) for folder in args.collect or []]
    if args.from_record:
        rows += read_table(Path(args.from_record).read_text())
    reading = args.collect is not None or args.from_record
    if not reading and not args.data_dir:
        parser.error("--data-dir is required (or --collect RUN_DIR ..., or --from-record FILE)")
    for seed in (args.seeds or [None]) if not reading else []:
        for stem in stems:
            where = out if seed is None else out / f"seed{seed}"
            where.mkdir(parents=True, exist_ok=True)
            given = params if seed is None else {**params, "seed": str(seed)}
            row = run_chapter(stem, args.data_dir, args.dataset, given, where)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    text = table(rows)
    try:
        summary, refused = over_seeds(rows), None
    except ValueError as error:  # the rows are still printed and recorded
        summary, refused = [], f"no summary over seeds: {error}"
    if summary:
        text += "\n\nOver seeds (test JA; gap: the chapter's minus the baseline's):\n\n"
        text += table(summary)
    print(text)
    if args.record:
        cores = os.cpu_count()
        when = time.strftime("%Y-%m-%d")
        details = "\n\n".join(
            f"`{r['chapter']}`, seed {r['seed']}:\n"
            f"```json\n{json.dumps(r['params'], indent=1)}\n```"
            for r in rows
        )
        Path(args.record).write_text(
            f"# Laptop profile, measured {when} on {cores} CPU cores\n\n"
            f"`python benchmarks/laptop.py {' '.join(argv or sys.argv[1:])}`\n\n"
            f"{text}\n\n## Each run's parameters\n\n{details}\n"
        )
    if refused:
        print(refused, file=sys.stderr)
        return 2
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
