"""The book build: render full GPU runs instead of re-running chapters; keep the leaderboard fresh.

After full runs on a GPU, **one command** builds the book from them::

    python -m lessons_lib.book use-runs --build

A full run is a chapter executed by papermill at the paper's settings, its executed notebook
saved anywhere under the runs folder (``$LESSONS_RUNS`` or ``<repository>/runs``)::

    papermill notebooks/002_resnet34_unet_progressive_resizing.ipynb \\
        runs/executed/002_resnet34_unet_progressive_resizing.ipynb \\
        -p profile full -p dataset isic2018 -p data_dir /data/isic2018

``use-runs`` finds the executed notebooks (of the ``full`` profile, unless told otherwise),
takes the chapter from papermill's record of its input notebook, checks that the run finished
without an error, and copies the newest run of each chapter to ``book/_executed/<chapter>.ipynb``
(git-ignored). ``--build`` then runs ``jupyter-book build book/ -W --keep-going``.

Sphinx extension (``sphinx.extra_extensions`` in ``_config.yml``): while the book is read,

* a notebook with a copy in ``book/_executed/`` is rendered from that copy, as executed, instead
  of being executed (or taken from the execution cache) at its smoke defaults; choosing or
  dropping a copy marks the page for re-reading;
* the pages in ``lessons_read_last`` (the leaderboard) are read after every other page, so that
  they see the runs the chapters just wrote, and are re-read whenever any chapter was re-read or
  the runs folder's ``metrics.json`` / per-image CSVs changed. The leaderboard's own notebook
  metadata (``mystnb.execution_mode: force``) makes re-reading it re-run it.

Other commands: ``status`` (what the book renders), ``clear [CHAPTER ...]`` (run the chapters
again), ``build`` (the strict build alone).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lessons_lib.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
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


# ------------------------------------------------------------------ Sphinx extension


def _executed_dir(app) -> Path:
    return Path(app.srcdir) / app.config.lessons_executed_dir


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _substitution_state(app, env) -> dict[str, str]:
    """``{docname: digest}`` of the notebooks rendered from an executed copy."""
    folder = _executed_dir(app)
    if not folder.is_dir():
        return {}
    state = {}
    for docname in set(env.found_docs) - set(app.config.lessons_read_last):
        copy = folder / f"{docname.rsplit('/', 1)[-1]}.ipynb"
        if copy.is_file() and str(env.doc2path(docname)).endswith(".ipynb"):
            state[docname] = _digest(copy)
    return state


def runs_fingerprint(runs: Path) -> str:
    """Changes whenever a run's ``metrics.json`` or per-image CSV is written or removed."""
    h = hashlib.sha1(str(runs).encode())
    if runs.is_dir():
        for p in sorted(runs.rglob("*")):
            if p.name == "metrics.json" or (p.name.startswith("per_image_") and p.suffix == ".csv"):
                st = p.stat()
                h.update(f"{p.relative_to(runs)}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()


def _runs_dir(app) -> Path:
    if app.config.lessons_runs_dir:
        return Path(app.config.lessons_runs_dir)
    # chapter.runs_dir() without importing torch into Sphinx (tests check they agree)
    return Path(os.environ.get("LESSONS_RUNS", REPO / "runs"))


def _outdated(app, env, added, changed, removed) -> list[str]:
    """Pages to re-read beyond Sphinx's own choice (event ``env-get-outdated``)."""
    extra: set[str] = set()
    state = _substitution_state(app, env)
    old_state = getattr(env, "lessons_executed", {})
    extra |= {d for d in set(state) | set(old_state) if state.get(d) != old_state.get(d)}
    env.lessons_executed = state

    last = [d for d in app.config.lessons_read_last if d in env.found_docs]
    fingerprint = runs_fingerprint(_runs_dir(app))
    others = (set(added) | set(changed) | extra) - set(last)
    if fingerprint != getattr(env, "lessons_runs", None) or any(
        str(env.doc2path(d)).endswith(".ipynb") for d in others
    ):
        extra |= set(last)
    return sorted(extra - set(added) - set(changed))


def _runs_read(app, env) -> None:
    """Remember the runs the last-read pages saw (``env-updated``, after all pages are read)."""
    env.lessons_runs = runs_fingerprint(_runs_dir(app))


def _read_last(app, env, docnames: list[str]) -> None:
    """Move the ``lessons_read_last`` pages to the end of the reading order (in place)."""
    last = [d for d in app.config.lessons_read_last if d in docnames]
    docnames[:] = [d for d in docnames if d not in last] + last


def _substitute(app, docname: str, source: list[str]) -> None:
    """Render a notebook from its executed copy, without executing it (``source-read``)."""
    copy = _executed_dir(app) / f"{docname.rsplit('/', 1)[-1]}.ipynb"
    if docname in app.config.lessons_read_last:
        return
    if not (copy.is_file() and str(app.env.doc2path(docname)).endswith(".ipynb")):
        return
    nb = json.loads(copy.read_text())
    nb.setdefault("metadata", {}).setdefault("mystnb", {})["execution_mode"] = "off"
    source[0] = json.dumps(nb)
    app.env.note_dependency(str(copy))


def setup(app) -> dict[str, Any]:
    """Register the extension (``sphinx.extra_extensions: [lessons_lib.book]``)."""
    app.add_config_value("lessons_executed_dir", "_executed", "env")
    app.add_config_value("lessons_read_last", ["notebooks/leaderboard"], "env")
    app.add_config_value("lessons_runs_dir", "", "env")
    app.connect("env-get-outdated", _outdated)
    app.connect("env-before-read-docs", _read_last)
    app.connect("source-read", _substitute)
    app.connect("env-updated", _runs_read)
    return {"version": "1", "env_version": 1, "parallel_read_safe": True}


if __name__ == "__main__":
    sys.exit(main())
