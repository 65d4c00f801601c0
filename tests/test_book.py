"""The book builds strictly, every chapter page exists, no page shows an error, links resolve.

The build is the one ``make book`` runs (``jupyter-book build book/ -W --keep-going``), in place:
into ``book/_build`` with its execution cache, and with the chapters writing their runs where
they always do (``$LESSONS_RUNS`` or ``<repository>/runs``, git-ignored). Building in place is
deliberate: the cache makes the test take seconds after ``make book`` (a fresh build executes
every chapter at smoke size: minutes each), and the leaderboard reads the runs the chapters
wrote; with a separate runs folder a cached build would leave it empty.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

bs4 = pytest.importorskip("bs4")

pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
HTML = BOOK / "_build" / "html"


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
def built() -> subprocess.CompletedProcess:
    """Build the book once per session (a lock keeps parallel workers from colliding)."""
    (BOOK / "_build").mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.is_file() else "jupyter-book", "build", "book/", "-W", "--keep-going"]
    with open(BOOK / "_build" / ".test_book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.time()
        proc = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}
        )
    print(f"book built in {time.time() - start:.0f} s")
    return proc


def pages() -> list[Path]:
    return [
        p
        for p in HTML.rglob("*.html")
        if not {"_static", "_sources", "_images"} & set(p.relative_to(HTML).parts)
    ]


def test_build_succeeds(built):
    log = built.stdout[-4000:] + built.stderr[-4000:]
    assert built.returncode == 0, f"jupyter-book build failed:\n{log}"
    assert "build succeeded" in built.stdout


def test_every_toc_page_exists(built):
    missing = [f for f in toc_files() if not (HTML / f"{f}.html").is_file()]
    assert not missing, f"pages in book/_toc.yml without HTML: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = set(toc_files())
    absent = [
        p.name for p in (REPO / "notebooks").glob("*.ipynb") if f"notebooks/{p.stem}" not in listed
    ]
    assert not absent, f"notebooks missing from book/_toc.yml: {absent}"


def test_no_page_shows_an_error(built):
    problems = []
    for page in pages():
        soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
        name = page.relative_to(HTML)
        for node in soup.select(".output.traceback, .output.error"):
            problems.append(f"{name}: error output: {node.get_text()[:300]}")
        for node in soup.select(".output.stderr"):
            text = node.get_text()
            if "Traceback" in text or "Error:" in text:
                problems.append(f"{name}: stderr shows an error: {text[:300]}")
        if "Traceback (most recent call last)" in soup.get_text():
            problems.append(f"{name}: contains a Python traceback")
    assert not problems, "\n".join(problems)


def test_internal_links_resolve(built):
    ids: dict[Path, set[str]] = {}

    def anchors(page: Path) -> set[str]:
        if page not in ids:
            soup = bs4.BeautifulSoup(page.read_text(), "html.parser")
            ids[page] = {tag["id"] for tag in soup.find_all(id=True)}
        return ids[page]

    broken = []
    for page in pages():
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
                    broken.append(f"{page.relative_to(HTML)}: {url} (no {target})")
                elif tag == "a" and parts.fragment and target.suffix == ".html":
                    if unquote(parts.fragment) not in anchors(target):
                        broken.append(f"{page.relative_to(HTML)}: {url} (no anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))
