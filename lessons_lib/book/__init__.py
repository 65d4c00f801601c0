"""The book build: render full GPU runs instead of re-running chapters; keep the leaderboard fresh.

After full runs on a GPU, **one command** builds the book from them::

    python -m lessons_lib.book use-runs --build

A full run is a chapter executed by papermill at the paper's settings, its executed notebook
saved anywhere under the runs folder (``$LESSONS_RUNS`` or ``<repository>/runs``)::

    papermill notebooks/002_resnet34_unet.ipynb \\
        runs/executed/002_resnet34_unet.ipynb \\
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

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from lessons_lib import hide_upstream_warnings
from lessons_lib.book.runs import (
    BOOK,
    BUILD_CMD,
    EXECUTED,
    NEVER_RENDERED,
    NOTEBOOKS,
    REPO,
    Executed,
    build,
    clear,
    find_executed,
    inspect_notebook,
    main,
    status,
    use_runs,
)

__all__ = [
    "BOOK",
    "BUILD_CMD",
    "EXECUTED",
    "NEVER_RENDERED",
    "NOTEBOOKS",
    "REPO",
    "Executed",
    "build",
    "clear",
    "find_executed",
    "inspect_notebook",
    "main",
    "runs_fingerprint",
    "setup",
    "status",
    "use_runs",
]


# ------------------------------------------------------------------ Sphinx extension


def _executed_dir(app) -> Path:
    """``$LESSONS_EXECUTED`` if set (the test suite renders its own papermill runs), else
    ``book/_executed``."""
    if os.environ.get("LESSONS_EXECUTED"):
        return Path(os.environ["LESSONS_EXECUTED"])
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
    hide_upstream_warnings(os.environ)  # the kernels that execute the pages inherit it
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
