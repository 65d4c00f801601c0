"""The book build: render full GPU runs instead of re-running chapters; keep the leaderboard fresh.

The command line of :mod:`lessons_lib.book` (``python -m lessons_lib.book``; that module's
docstring describes the commands, and the line above is their ``--help`` description): read an
executed chapter notebook's papermill record (:func:`inspect_notebook`), choose the newest
usable run of each chapter (:func:`find_executed`) and copy it to ``book/_executed/``
(:func:`use_runs`), show or drop the copies (:func:`status`, :func:`clear`), and run the strict
build (:func:`build`). :mod:`lessons_lib.book` re-exports everything defined here and holds the
Sphinx extension that renders the copies.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lessons_lib.atomic import write_text

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
NOTEBOOKS = REPO / "notebooks"
EXECUTED = BOOK / "_executed"
BUILD_CMD = ["build", "book/", "-W", "--keep-going"]
NEVER_RENDERED = ("leaderboard",)  # notebooks always run at build time (they read the runs)


# ------------------------------------------------------------------ executed notebooks


@dataclass
class Executed:
    """An executed notebook, and what its papermill record says about it."""

    path: Path
    chapter: str | None  # stem of the chapter notebook it ran (e.g. "002_resnet34_unet_...")
    profile: str  # the ``profile`` parameter it ran with ("smoke" when not given)
    parameters: dict[str, Any] = field(default_factory=dict)
    finished: str = ""  # papermill's end time (or the file's mtime)
    problem: str | None = None  # why it cannot be used, if it cannot


def inspect_notebook(path: str | Path) -> Executed:
    """Read an executed notebook's papermill record and check that the run succeeded."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text())
        meta = nb.get("metadata", {})
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return Executed(path, None, "?", problem=f"not a readable notebook ({exc})")
    pm = meta.get("papermill") or {}
    params = dict(pm.get("parameters") or {})
    chapter = Path(pm["input_path"]).stem if pm.get("input_path") else path.stem
    finished = pm.get("end_time") or ""
    rec = Executed(path, chapter, str(params.get("profile", "smoke")), params, finished)
    code = [c for c in cells if c.get("cell_type") == "code"]
    if pm.get("exception"):
        rec.problem = "the run raised an exception"
    elif any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
        rec.problem = "a cell has an error output"
    elif pm and not pm.get("end_time"):
        rec.problem = "the run did not finish"
    elif not code or any(c.get("execution_count") is None and c.get("source") for c in code):
        rec.problem = "not every code cell was executed"
    return rec


def find_executed(
    paths: list[str | Path], profile: str = "full", notebooks: Path = NOTEBOOKS
) -> tuple[dict[str, Executed], list[Executed]]:
    """The newest usable executed notebook of each chapter, and the ones left out.

    Args:
        paths: Executed notebooks, or folders searched recursively for them. Files named
            explicitly are taken whatever their profile; found ones must match ``profile``.
        profile: ``full``, ``smoke`` or ``any``.
        notebooks: The chapter notebooks a run must belong to.

    Returns:
        ``({chapter: Executed}, [left-out Executed with its .problem])``.
    """
    candidates: list[tuple[Executed, bool]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
            candidates += [(inspect_notebook(q), False) for q in found]
        elif p.is_file():
            candidates.append((inspect_notebook(p), True))
        else:
            candidates.append((Executed(p, None, "?", problem="no such file or folder"), True))
    chosen: dict[str, Executed] = {}
    left: list[Executed] = []
    for rec, explicit in candidates:
        if rec.problem is None and not (notebooks / f"{rec.chapter}.ipynb").is_file():
            rec.problem = f"not a chapter run (no notebooks/{rec.chapter}.ipynb)"
        if rec.problem is None and rec.chapter in NEVER_RENDERED:
            rec.problem = f"{rec.chapter} always runs at build time"
        if rec.problem is None and not explicit and profile not in ("any", rec.profile):
            rec.problem = f"profile {rec.profile!r}, not {profile!r}"
        if rec.problem is not None:
            left.append(rec)
            continue
        rec.finished = rec.finished or _mtime(rec.path)
        old = chosen.get(rec.chapter)
        if old is None or rec.finished > old.finished:
            if old is not None:
                old.problem = f"an older run than {rec.path}"
                left.append(old)
            chosen[rec.chapter] = rec
        else:
            rec.problem = f"an older run than {old.path}"
            left.append(rec)
    return chosen, left


def _mtime(path: Path) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat()


def use_runs(
    paths: list[str | Path],
    profile: str = "full",
    dest: Path = EXECUTED,
    notebooks: Path = NOTEBOOKS,
) -> dict[str, Executed]:
    """Copy each chapter's newest usable executed notebook to ``dest/<chapter>.ipynb``.

    Adds to (or replaces chapters in) what ``dest`` already holds; prints what was chosen and
    what was left out and why. Returns the chosen runs.
    """
    chosen, left = find_executed(paths, profile, notebooks)
    dest.mkdir(parents=True, exist_ok=True)
    write_text(dest / ".gitignore", "# written by python -m lessons_lib.book\n*\n")
    for chapter, rec in sorted(chosen.items()):
        write_text(dest / f"{chapter}.ipynb", rec.path.read_text())
        print(f"renders {chapter}: {rec.path} (profile {rec.profile}, finished {rec.finished})")
    for rec in left:
        print(f"skipped {rec.path}: {rec.problem}")
    if not chosen:
        print(f"no usable {profile} runs found in {', '.join(map(str, paths))}")
    return chosen


def status(dest: Path = EXECUTED) -> list[Executed]:
    """Print (and return) the executed notebooks the book renders instead of running."""
    recs = [inspect_notebook(p) for p in sorted(dest.glob("*.ipynb"))] if dest.is_dir() else []
    for rec in recs:
        print(f"{rec.path.stem}: rendered from a {rec.profile} run finished {rec.finished}")
    if not recs:
        print("every chapter is executed by the build (no executed runs in use)")
    return recs


def clear(chapters: list[str] | None = None, dest: Path = EXECUTED) -> None:
    """Stop rendering executed runs (of ``chapters``, or all): the build runs them again."""
    if not dest.is_dir():
        return
    if not chapters:
        shutil.rmtree(dest)
        print(f"removed {dest}")
        return
    for chapter in chapters:
        path = dest / f"{Path(chapter).stem}.ipynb"
        if path.is_file():
            path.unlink()
            print(f"removed {path}")


def build(extra: list[str] | None = None) -> int:
    """Run the strict book build from the repository root; return its exit code."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.is_file() else "jupyter-book", *BUILD_CMD, *(extra or [])]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons_lib.book", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("use-runs", help="render executed (full) runs instead of running them")
    p.add_argument("paths", nargs="*", type=Path, help="executed notebooks or folders")
    p.add_argument("--profile", default="full", help="full (default), smoke or any")
    p.add_argument("--build", action="store_true", help="then build the book")
    sub.add_parser("status", help="which chapters the book renders from executed runs")
    p = sub.add_parser("clear", help="run the chapters again at build time")
    p.add_argument("chapters", nargs="*")
    sub.add_parser("build", help="jupyter-book build book/ -W --keep-going")
    args = parser.parse_args(argv)
    if args.command == "use-runs":
        from lessons_lib.chapter import runs_dir

        chosen = use_runs(args.paths or [runs_dir()], args.profile)
        if args.build:
            return build()
        return 0 if chosen else 1
    if args.command == "status":
        status()
    elif args.command == "clear":
        clear(args.chapters)
    elif args.command == "build":
        return build()
    return 0
