"""lessons_lib.book: choosing executed runs, and the Sphinx extension on a tiny book."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lessons_lib import book


def executed_nb(
    path: Path,
    chapter: str = "002_unet",
    profile: str | None = "full",
    end: str = "2024-01-02T00:00:00",
    text: str = "ok",
    **papermill,
) -> Path:
    """An executed notebook with papermill's record, as `papermill in.ipynb out.ipynb` writes."""
    cell = new_code_cell("print('ok')", execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    nb = new_notebook(cells=[new_markdown_cell("# A chapter"), cell])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["papermill"] = {
        "input_path": f"notebooks/{chapter}.ipynb",
        "parameters": {"profile": profile} if profile else {},
        "exception": None,
        "end_time": end,
        **papermill,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("001_cdnn", "002_unet", "leaderboard"):
        (folder / f"{name}.ipynb").write_text("{}")
    return folder


def test_inspect_notebook(tmp_path: Path):
    rec = book.inspect_notebook(executed_nb(tmp_path / "a.ipynb"))
    assert (rec.chapter, rec.profile, rec.problem) == ("002_unet", "full", None)
    assert book.inspect_notebook(executed_nb(tmp_path / "b.ipynb", exception=True)).problem
    assert "finish" in book.inspect_notebook(executed_nb(tmp_path / "c.ipynb", end=None)).problem
    path = executed_nb(tmp_path / "d.ipynb")
    nb = json.loads(path.read_text())
    nb["cells"][1]["outputs"].append(
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": []}
    )
    path.write_text(json.dumps(nb))
    assert "error" in book.inspect_notebook(path).problem
    (tmp_path / "e.ipynb").write_text("not json")
    assert "readable" in book.inspect_notebook(tmp_path / "e.ipynb").problem
    # no profile parameter: the notebook's default, smoke
    assert book.inspect_notebook(executed_nb(tmp_path / "f.ipynb", profile=None)).profile == "smoke"


def test_find_executed_picks_newest_full_run_per_chapter(tmp_path: Path, notebooks: Path):
    runs = tmp_path / "runs"
    old = executed_nb(runs / "x" / "old.ipynb", end="2024-01-01T00:00:00")
    new = executed_nb(runs / "y" / "new.ipynb", end="2024-02-01T00:00:00")
    smoke = executed_nb(runs / "smoke.ipynb", chapter="001_cdnn", profile="smoke")
    executed_nb(runs / "other.ipynb", chapter="999_unknown")
    executed_nb(runs / "lb.ipynb", chapter="leaderboard")
    executed_nb(runs / "broken.ipynb", chapter="001_cdnn", exception=True)
    chosen, left = book.find_executed([runs], "full", notebooks)
    assert {k: v.path for k, v in chosen.items()} == {"002_unet": new}
    why = {rec.path.name: rec.problem for rec in left}
    assert "older" in why["old.ipynb"] and "profile 'smoke'" in why["smoke.ipynb"]
    assert "not a chapter" in why["other.ipynb"] and "always runs" in why["lb.ipynb"]
    assert "exception" in why["broken.ipynb"]
    # a file named explicitly is used whatever its profile; --profile any accepts all
    assert set(book.find_executed([smoke], "full", notebooks)[0]) == {"001_cdnn"}
    assert set(book.find_executed([runs], "any", notebooks)[0]) == {"001_cdnn", "002_unet"}
    assert old.exists()


def test_use_runs_status_clear(tmp_path: Path, notebooks: Path, capsys):
    dest = tmp_path / "book" / "_executed"
    executed_nb(tmp_path / "runs" / "a.ipynb")
    chosen = book.use_runs([tmp_path / "runs"], "full", dest, notebooks)
    assert set(chosen) == {"002_unet"}
    assert (dest / "002_unet.ipynb").read_text() == (tmp_path / "runs" / "a.ipynb").read_text()
    assert (dest / ".gitignore").read_text().strip().endswith("*")
    assert [r.chapter for r in book.status(dest)] == ["002_unet"]
    book.clear(["002_unet"], dest)
    assert not (dest / "002_unet.ipynb").exists()
    book.clear(None, dest)
    assert not dest.exists()
    assert book.status(dest) == []
    assert "no executed runs" in capsys.readouterr().out


def test_runs_fingerprint_changes_with_runs(tmp_path: Path):
    runs = tmp_path / "runs"
    empty = book.runs_fingerprint(runs)
    (runs / "001" / "smoke-synthetic").mkdir(parents=True)
    (runs / "001" / "smoke-synthetic" / "model.pth").write_text("x")
    assert book.runs_fingerprint(runs) == empty  # not a result
    (runs / "001" / "smoke-synthetic" / "metrics.json").write_text("{}")
    first = book.runs_fingerprint(runs)
    assert first != empty
    assert book.runs_fingerprint(runs) == first
    (runs / "001" / "smoke-synthetic" / "per_image_valid.csv").write_text("image_id\n")
    assert book.runs_fingerprint(runs) != first


def test_read_last_order_and_runs_dir(monkeypatch, tmp_path: Path):
    class App:
        class config:  # noqa: N801
            lessons_read_last = ["notebooks/leaderboard"]
            lessons_runs_dir = ""

    docs = ["bibliography", "notebooks/leaderboard", "notebooks/001", "intro"]
    book._read_last(App, None, docs)
    assert docs == ["bibliography", "notebooks/001", "intro", "notebooks/leaderboard"]
    from lessons_lib.chapter import runs_dir

    monkeypatch.setenv("LESSONS_RUNS", str(tmp_path))
    assert book._runs_dir(App) == runs_dir() == tmp_path
    monkeypatch.delenv("LESSONS_RUNS")
    assert book._runs_dir(App) == runs_dir()


def test_default_paths_are_the_repositorys():
    """The command line's defaults (notebooks to match, book to copy into, build folder) and the
    extension's default runs folder are the repository's, wherever the module lives."""
    from lessons_lib import chapter

    assert book.REPO == chapter.REPO
    assert (book.NOTEBOOKS / "leaderboard.ipynb").is_file()
    assert (book.BOOK / "_toc.yml").is_file()
    assert book.EXECUTED == book.BOOK / "_executed"


MINI_CONFIG = """
title: mini
only_build_toc_files: true
exclude_patterns: [_executed]
execute:
  execute_notebooks: cache
  timeout: 120
  raise_on_error: true
sphinx:
  extra_extensions: [lessons_lib.book]
  config:
    lessons_read_last: [aaa_leaderboard]
"""
MINI_TOC = """
format: jb-book
root: index
chapters:
  - file: aaa_leaderboard
  - file: zzz_chapter
"""


def _mini_book(root: Path) -> None:
    root.mkdir()
    (root / "_config.yml").write_text(MINI_CONFIG)
    (root / "_toc.yml").write_text(MINI_TOC)
    (root / "index.md").write_text("# Mini\n")

    def nb(name: str, code: str, meta: dict | None = None) -> None:
        notebook = new_notebook(cells=[new_markdown_cell(f"# {name}"), new_code_cell(code)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        notebook.metadata.update(meta or {})
        nbformat.write(notebook, root / f"{name}.ipynb")

    # the chapter writes a run; the leaderboard (read first alphabetically) lists the runs
    nb(
        "zzz_chapter",
        "import os, pathlib\n"
        "p = pathlib.Path(os.environ['LESSONS_RUNS'], 'zzz', 'metrics.json')\n"
        "p.parent.mkdir(parents=True, exist_ok=True)\n"
        "p.write_text('{}')\n"
        "print('executed at build')",
    )
    nb(
        "aaa_leaderboard",
        "import os, pathlib\n"
        "print('runs:', sorted(str(p.parent.name) for p in "
        "pathlib.Path(os.environ['LESSONS_RUNS']).rglob('metrics.json')))",
        {"mystnb": {"execution_mode": "force"}},
    )


def _build(root: Path, runs: Path) -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(exe), "build", str(root), "-W", "--keep-going"],
        capture_output=True,
        text=True,
        env={**os.environ, "LESSONS_RUNS": str(runs), "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _read(log: str) -> list[str]:
    """The pages Sphinx read, in order."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    return [
        line.split("] ")[-1].strip() for line in log.splitlines() if "reading sources... [" in line
    ]


@pytest.mark.book
def test_extension_renders_executed_runs_and_reads_leaderboard_last(tmp_path: Path):
    root, runs = tmp_path / "mini", tmp_path / "runs"
    _mini_book(root)
    html = root / "_build" / "html"

    log = _build(root, runs)  # 1: everything executes, the leaderboard after the chapter
    assert _read(log)[-1] == "aaa_leaderboard"
    assert "runs: ['zzz']" in (html / "aaa_leaderboard.html").read_text()
    assert "executed at build" in (html / "zzz_chapter.html").read_text()

    assert _read(_build(root, runs)) == []  # 2: nothing changed, nothing read

    (root / "_executed").mkdir()  # 3: a full run is rendered, not executed
    executed_nb(root / "_executed" / "zzz_chapter.ipynb", "zzz_chapter", text="from a full run")
    (runs / "full").mkdir()
    (runs / "full" / "metrics.json").write_text("{}")
    log = _build(root, runs)
    assert _read(log) == ["zzz_chapter", "aaa_leaderboard"]
    page = (html / "zzz_chapter.html").read_text()
    assert "from a full run" in page and "executed at build" not in page
    assert "full" in (html / "aaa_leaderboard.html").read_text()

    (root / "_executed" / "zzz_chapter.ipynb").unlink()  # 4: back to the (cached) smoke run
    log = _build(root, runs)
    assert "zzz_chapter" in _read(log)
    assert "executed at build" in (html / "zzz_chapter.html").read_text()
