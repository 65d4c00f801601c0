"""The book builds strictly, every chapter page exists, no page shows an error, links resolve.

The build is the one ``make book`` runs (``jupyter-book build book/ -W --keep-going``), with two
differences that keep each chapter's default run to one execution in the test suite: the
chapters are rendered from the notebooks the papermill tests executed (the session fixture
``chapter_runs``, passed as ``$LESSONS_EXECUTED``, the mechanism ``make book-runs`` uses for
full runs), and the leaderboard reads those runs (``$LESSONS_RUNS``). The build goes to a
temporary folder, so a developer's ``book/_build`` is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import bs4  # installed with jupyter-book (pydata-sphinx-theme needs it)
import pytest
import yaml

pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"


def toc_files(toc_path: Path = BOOK / "_toc.yml") -> list[str]:
    """Every ``file`` of the table of contents (and its root), without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(Path(node["file"]).with_suffix("")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("book")


@pytest.fixture(scope="session")
def built(chapter_runs: dict[str, Path], build_dir: Path) -> subprocess.CompletedProcess:
    """Build the book once per session from the papermill runs."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.is_file() else "jupyter-book", "build", "book/", "-W", "--keep-going"]
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "LESSONS_EXECUTED": str(chapter_runs["executed"]),
        "LESSONS_RUNS": str(chapter_runs["runs"]),
    }
    start = time.time()
    proc = subprocess.run(
        [*cmd, "--path-output", str(build_dir)], cwd=REPO, capture_output=True, text=True, env=env
    )
    print(f"book built in {time.time() - start:.0f} s")
    return proc


@pytest.fixture(scope="session")
def html(built, build_dir: Path) -> Path:
    return build_dir / "_build" / "html"


def pages(html: Path) -> list[Path]:
    return [
        p
        for p in html.rglob("*.html")
        if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts)
    ]


def test_build_succeeds(built):
    log = built.stdout[-4000:] + built.stderr[-4000:]
    assert built.returncode == 0, f"jupyter-book build failed:\n{log}"
    assert "build succeeded" in built.stdout


def test_every_toc_page_exists(html):
    missing = [f for f in toc_files() if not (html / f"{f}.html").is_file()]
    assert not missing, f"pages in book/_toc.yml without HTML: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = set(toc_files())
    absent = [
        p.name for p in (REPO / "notebooks").glob("*.ipynb") if f"notebooks/{p.stem}" not in listed
    ]
    assert not absent, f"notebooks missing from book/_toc.yml: {absent}"


def test_no_page_shows_an_error(html):
    problems = []
    for page in pages(html):
        soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
        name = page.relative_to(html)
        for node in soup.select(".output.traceback, .output.error"):
            problems.append(f"{name}: error output: {node.get_text()[:300]}")
        for node in soup.select(".output.stderr"):
            text = node.get_text()
            if "Traceback" in text or "Error:" in text:
                problems.append(f"{name}: stderr shows an error: {text[:300]}")
        if "Traceback (most recent call last)" in soup.get_text():
            problems.append(f"{name}: contains a Python traceback")
    assert not problems, "\n".join(problems)


def test_no_page_shows_the_paths_of_the_machine_that_built_it(html, chapter_runs):
    """Outputs name run folders and caches the way :func:`lessons_lib.chapter.display_path`
    prints them (``$LESSONS_RUNS/...``, ``runs/...``, ``~/...``), never the builder's own
    folders: a reader's book would otherwise show where one machine kept its files."""
    machine = {
        "the runs folder": str(chapter_runs["runs"]),
        "the cache folder": os.environ["LESSONS_CACHE"],
        "the checkout": str(REPO),
        "the home folder": f"{Path.home()}/",
    }
    shown = []
    for page in pages(html):
        soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
        outputs = " ".join(node.get_text() for node in soup.select(".cell_output"))
        shown += [
            f"{page.relative_to(html)}: {what} ({path})"
            for what, path in machine.items()
            if path in outputs
        ]
    assert not shown, "pages print the builder's paths:\n" + "\n".join(shown)


def test_internal_links_resolve(html):
    ids: dict[Path, set[str]] = {}

    def anchors(page: Path) -> set[str]:
        if page not in ids:
            soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
            ids[page] = {tag["id"] for tag in soup.find_all(id=True)}
        return ids[page]

    broken = []
    for page in pages(html):
        soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
        for tag, attr in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
            for node in soup.find_all(tag):
                url = node.get(attr)
                if not url:
                    continue
                parts = urlsplit(url)
                if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:")):
                    continue  # external
                target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
                if not target.exists():
                    broken.append(f"{page.relative_to(html)}: {url} (no {target})")
                elif tag == "a" and parts.fragment and target.suffix == ".html":
                    if unquote(parts.fragment) not in anchors(target):
                        broken.append(f"{page.relative_to(html)}: {url} (no anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))
