"""``data download``: streaming checksums, resume, host fallback, safe unpacking, counts, PH2.

Everything runs against an HTTP server started on localhost by the test (``http.server`` in a
thread) serving tiny archives built here in the publishers' folder names; the handler can
answer 404, cut the connection after N bytes, ignore ``Range`` or stall. The published
checksums and image counts are replaced by those of the tiny archives. The real hosts are never
contacted: every test runs with ``socket.create_connection`` refusing any host but localhost
(and checks afterwards that nothing tried).

PH2's archive is a RAR, unpacked by an external tool. bsdtar (libarchive) also reads zip
archives, so the real-tool test serves a zip named ``PH2Dataset.rar`` and lets bsdtar (or 7z)
unpack it: the tool path is exercised without a RAR file in the repository. It is skipped when
neither tool is installed (``sudo apt-get install libarchive-tools``).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lessons_lib.cli import main
from lessons_lib.data import find_pairs
from lessons_lib.errors import DataError

dl = importlib.import_module("lessons_lib.data.download")  # the module, whatever data/ exports

LOCAL = {"127.0.0.1", "localhost", "::1"}


# --- the test's HTTP server ------------------------------------------------------------------


@dataclass
class Server:
    """Files served under ``/mirror/...`` and how to misbehave, by path."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (bytes, times)
    ignore_range: set[str] = field(default_factory=set)
    stall: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, prefix: str = "mirror") -> str:
        return f"{self.base}/{prefix}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def _handler(srv: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?")[0]
            rng = self.headers.get("Range")
            srv.requests.append((path, rng))
            if path in srv.stall:
                srv.release.wait(10)
                return
            data = srv.files.get(path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if rng and path not in srv.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut, times = srv.cut_after.get(path, (0, 0))
            if times:
                srv.cut_after[path] = (cut, times - 1)
                self.wfile.write(body[:cut])
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    srv.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def offline(monkeypatch) -> Iterator[list[str]]:
    """Refuse (and record) any connection to a host other than localhost; no retry waits."""
    tried: list[str] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in LOCAL:
            tried.append(str(address[0]))
            raise RuntimeError(f"a test tried to reach {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for var in (dl.MIRROR_ENV, "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)
    monkeypatch.setattr(dl, "CHUNK", 256)  # several chunks even for tiny archives
    yield tried
    assert tried == [], f"tests must not contact real hosts: {tried}"


# --- tiny archives in the publishers' layouts --------------------------------------------


def _image(seed: int, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _mask(fmt: str = "PNG") -> bytes:
    m = np.zeros((6, 8), np.uint8)
    m[2:4, 2:6] = 255
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format=fmt)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _with_member(archive: bytes, name: str, data: bytes) -> bytes:
    """``archive`` (a zip's bytes) with one member more, as a tampered copy would hold it."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    return _zip({**members, name: data})


def isic_archives(dataset: str, counts: dict[str, int]) -> dict[str, bytes]:
    """Archive file name -> bytes for ``dataset`` with ``counts[split]`` images per split."""
    out, n = {}, 0
    for split, (images, masks) in dl.archives_of(dataset).items():
        if split not in counts:
            continue
        suffix = "_Segmentation.png" if dataset == "isic2016" else "_segmentation.png"
        img, gt = {}, {}
        for _ in range(counts[split]):
            stem = f"ISIC_{n:07d}"
            img[f"{images.folder}/{stem}.jpg"] = _image(n)
            gt[f"{masks.folder}/{stem}{suffix}"] = _mask()
            if dataset == "isic2017":  # what the 2017 archives hold beside the images
                img[f"{images.folder}/{stem}_superpixels.png"] = _image(n, "PNG")
            n += 1
        if dataset == "isic2017":
            img[f"{images.folder}/{images.folder}_metadata.csv"] = b"image_id,age\n"
        if dataset == "isic2018":
            img[f"{images.folder}/ATTRIBUTION.txt"] = b"CC-0\n"
            gt[f"{masks.folder}/LICENSE.txt"] = b"CC-0\n"
        out[images.file], out[masks.file] = _zip(img), _zip(gt)
    return out


def ph2_archive(n: int) -> bytes:
    """A zip with PH2's layout (``PH2Dataset/PH2 Dataset images/IMDxxx/...``)."""
    members = {"PH2Dataset/PH2_dataset.txt": b"readme\n"}
    for i in range(1, n + 1):
        case = f"PH2Dataset/PH2 Dataset images/IMD{i:03d}"
        members[f"{case}/IMD{i:03d}_Dermoscopic_Image/IMD{i:03d}.bmp"] = _image(i, "BMP")
        members[f"{case}/IMD{i:03d}_lesion/IMD{i:03d}_lesion.bmp"] = _mask("BMP")
    return _zip(members)


def publish(
    monkeypatch,
    srv: Server,
    dataset: str,
    archives: dict[str, bytes],
    counts: dict[str, int],
    algorithm: str = "sha256",
    sizes: bool = True,
) -> None:
    """Serve ``archives`` under ``/mirror`` and make them the 'published' ones."""
    year = {"isic2016": "2016", "isic2017": "2017", "isic2018": "2018", "ph2": "ph2"}[dataset]
    for name, data in archives.items():
        srv.files[f"/mirror/{year}/{name}"] = data
        if dataset != "ph2":
            digest = hashlib.new(algorithm, data).hexdigest()
            size = len(data) if sizes else None
            monkeypatch.setitem(dl.CHECKSUMS, name, dl.Checksum(algorithm, digest, size))
    monkeypatch.setitem(dl.EXPECTED_COUNTS, dataset, dict(counts))


COUNTS_2018 = {"train": 3, "valid": 2, "test": 2}


@pytest.fixture
def isic2018(monkeypatch, server: Server) -> dict[str, bytes]:
    archives = isic_archives("isic2018", COUNTS_2018)
    publish(monkeypatch, server, "isic2018", archives, COUNTS_2018)
    monkeypatch.setenv(dl.MIRROR_ENV, server.url())
    return archives


TRAIN_INPUT = "ISIC2018_Task1-2_Training_Input.zip"


# --- the tests -------------------------------------------------------------------------------


def test_sources_follow_the_layouts_and_the_published_table(monkeypatch) -> None:
    files = {
        a.file
        for d in ("isic2016", "isic2017", "isic2018")
        for s in dl.archives_of(d).values()
        for a in s
    }
    assert files == set(dl.CHECKSUMS)  # every archive named after its layout folder has a checksum
    a = dl.archives_of("isic2018")["train"][0]
    assert a.file == TRAIN_INPUT and a.folder == "ISIC2018_Task1-2_Training_Input"
    assert dl.archive_urls(a) == [
        f"https://isic-archive.s3.amazonaws.com/challenges/2018/{TRAIN_INPUT}",
        f"https://isic-challenge-data.s3.amazonaws.com/2018/{TRAIN_INPUT}",
    ]
    assert [x.file for x in dl.archives_of("isic2017")["test"]] == [
        "ISIC-2017_Test_v2_Data.zip",
        "ISIC-2017_Test_v2_Part1_GroundTruth.zip",
    ]
    assert "valid" not in dl.archives_of("isic2016")
    ph2 = dl.archives_of("ph2")["all"][0]
    assert dl.archive_urls(ph2) == [dl.PH2_URL] and dl.CHECKSUMS.get(ph2.file) is None
    monkeypatch.setenv(dl.MIRROR_ENV, "http://a.example/x/, http://b.example")
    assert dl.archive_urls(ph2) == [
        "http://a.example/x/ph2/PH2Dataset.rar",
        "http://b.example/ph2/PH2Dataset.rar",
    ]
    assert dl.archive_urls(a, ["http://c.example"]) == [f"http://c.example/2018/{TRAIN_INPUT}"]


def test_the_guard_refuses_real_hosts(tmp_path: Path, offline: list[str]) -> None:
    a = dl.archives_of("isic2018")["valid"][1]
    with pytest.raises(RuntimeError, match="tried to reach isic-archive.s3.amazonaws.com"):
        dl.fetch(dl.archive_urls(a), tmp_path / a.file, progress=False)
    assert offline == ["isic-archive.s3.amazonaws.com"]
    offline.clear()


def test_download_through_the_cli_then_rerun_does_nothing(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], monkeypatch, capsys
) -> None:
    def no_second_read(*args, **kwargs):
        raise AssertionError("a fresh download must be hashed while it streams, not re-read")

    monkeypatch.setattr(dl, "hash_file", no_second_read)
    root = tmp_path / "isic2018"
    assert main(["data", "download", "isic2018", "--to", str(root)]) == 0
    out, err = capsys.readouterr()
    for split, n in COUNTS_2018.items():
        assert len(find_pairs(root, "isic2018", split)) == n
    store = root / "archives"
    for name, data in isic2018.items():
        assert (store / name).read_bytes() == data
        assert (store / f"{name}.verified").is_file()
    assert not list(store.glob("*.partial")) and not list(root.glob(".unpacking-*"))
    assert "ready in" in out and "train 3, valid 2, test 2" in out
    assert TRAIN_INPUT in err and "B/s" in err  # the progress bar: bytes and rate
    assert sorted(server.paths()) == sorted(f"/mirror/2018/{n}" for n in isic2018)

    before = len(server.requests)
    assert main(["data", "download", "isic2018", "--to", str(root)]) == 0
    assert len(server.requests) == before  # nothing downloaded again
    assert "already unpacked" in capsys.readouterr().out


def test_first_host_404_then_the_second(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    bases = [server.url("gone"), server.url()]
    dl.download("isic2018", tmp_path, ["valid"], mirrors=bases, progress=False)
    assert len(find_pairs(tmp_path, "isic2018", "valid")) == 2
    name = "ISIC2018_Task1-2_Validation_Input.zip"
    assert server.paths()[:2] == [f"/gone/2018/{name}", f"/mirror/2018/{name}"]
    assert "HTTP 404" in capsys.readouterr().out


def test_every_host_failing_names_each_url(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "valid"]
    mirrors = ["--mirror", server.url("a"), "--mirror", server.url("b")]
    assert main(args + mirrors) == 2
    err = capsys.readouterr().err
    name = "ISIC2018_Task1-2_Validation_Input.zip"
    assert err.startswith("error: ") and "could not download" in err
    assert f"{server.url('a')}/2018/{name} (HTTP 404" in err
    assert f"{server.url('b')}/2018/{name} (HTTP 404" in err
    assert not list((tmp_path / "archives").iterdir())  # no empty .partial file left


def test_a_stalled_host_times_out_and_the_next_is_used(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes]
) -> None:
    a = dl.archives_of("isic2018")["valid"][1]
    server.stall.add(f"/slow/2018/{a.file}")
    urls = dl.archive_urls(a, [server.url("slow"), server.url()])
    digest = dl.fetch(urls, tmp_path / a.file, dl.CHECKSUMS[a.file], timeout=0.5, progress=False)
    assert digest == dl.CHECKSUMS[a.file].digest
    urls = [urls[0]]
    with pytest.raises(DataError, match="timed out") as info:
        dl.fetch(urls, tmp_path / "again.zip", dl.CHECKSUMS[a.file], timeout=0.3, progress=False)
    assert urls[0] in str(info.value)


def test_a_cut_connection_resumes_with_a_range_request(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes]
) -> None:
    path = f"/mirror/2018/{TRAIN_INPUT}"
    server.cut_after[path] = (300, 1)
    dl.download("isic2018", tmp_path, ["train"], progress=False)
    assert [r for p, r in server.requests if p == path] == [None, "bytes=300-"]
    assert (tmp_path / "archives" / TRAIN_INPUT).read_bytes() == isic2018[TRAIN_INPUT]
    assert len(find_pairs(tmp_path, "isic2018", "train")) == 3


def test_a_rerun_resumes_the_partial_file(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], monkeypatch, capsys
) -> None:
    path = f"/mirror/2018/{TRAIN_INPUT}"
    server.cut_after[path] = (500, 99)
    monkeypatch.setattr(dl, "RETRIES", 2)
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "train"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "kept breaking" in err and "rerun the same command to resume" in err
    partial = tmp_path / "archives" / f"{TRAIN_INPUT}.partial"
    assert partial.read_bytes() == isic2018[TRAIN_INPUT][:1000]  # two attempts of 500 bytes
    server.cut_after.clear()
    assert main(args) == 0
    assert (path, "bytes=1000-") in server.requests
    assert (tmp_path / "archives" / TRAIN_INPUT).read_bytes() == isic2018[TRAIN_INPUT]
    assert not partial.exists()


def test_a_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    store = tmp_path / "archives"
    store.mkdir()
    (store / f"{TRAIN_INPUT}.partial").write_bytes(isic2018[TRAIN_INPUT][:200])
    server.ignore_range.add(f"/mirror/2018/{TRAIN_INPUT}")
    dl.download("isic2018", tmp_path, ["train"], progress=False)
    assert (f"/mirror/2018/{TRAIN_INPUT}", "bytes=200-") in server.requests
    assert "ignored the resume request" in capsys.readouterr().out
    assert (store / TRAIN_INPUT).read_bytes() == isic2018[TRAIN_INPUT]


@pytest.mark.parametrize("extra", [b"", b"garbage"])
def test_416_means_complete_or_start_again(
    tmp_path: Path, server: Server, monkeypatch, extra: bytes
) -> None:
    """MD5-only archives (2017) have no published size: the server's 416 decides."""
    counts = {"valid": 2}
    archives = isic_archives("isic2017", counts)
    publish(monkeypatch, server, "isic2017", archives, counts, "md5", sizes=False)
    name = "ISIC-2017_Validation_Data.zip"
    store = tmp_path / "archives"
    store.mkdir()
    (store / f"{name}.partial").write_bytes(archives[name] + extra)
    dl.download("isic2017", tmp_path, ["valid"], mirrors=[server.url()], progress=False)
    ranges = [r for p, r in server.requests if p.endswith(name)]
    size = len(archives[name]) + len(extra)
    assert ranges == ([f"bytes={size}-"] if not extra else [f"bytes={size}-", None])
    assert (store / name).read_bytes() == archives[name]


def test_a_corrupt_download_deletes_only_its_partial_file(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "valid"]
    name = "ISIC2018_Task1_Validation_GroundTruth.zip"
    good = isic2018[name]
    server.files[f"/mirror/2018/{name}"] = bytes(b ^ 0xFF for b in good)  # same size
    assert main(args) == 2
    err = capsys.readouterr().err
    digest = hashlib.sha256(good).hexdigest()
    bad = hashlib.sha256(server.files[f"/mirror/2018/{name}"]).hexdigest()
    assert name in err and f"expected SHA256 {digest}, got {bad}" in err
    assert "rerun the same command" in err and "please report" in err
    store = tmp_path / "archives"
    assert not (store / f"{name}.partial").exists() and not (store / name).exists()
    assert keep.read_text() == "mine"  # nothing else deleted: the verified images archive stays
    assert (store / "ISIC2018_Task1-2_Validation_Input.zip").is_file()
    assert (tmp_path / "ISIC2018_Task1-2_Validation_Input").is_dir()


def test_a_file_of_another_size_is_not_downloaded(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    name = "ISIC2018_Task1_Validation_GroundTruth.zip"
    server.files[f"/mirror/2018/{name}"] += b"more"
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "valid"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        f"{len(isic2018[name]) + 4} bytes, but the published size is {len(isic2018[name])}" in err
    )
    assert "is not the published one" in err and "please report" in err
    assert not (tmp_path / "archives" / f"{name}.partial").exists()


def test_ctrl_c_keeps_the_partial_file_for_a_resume(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], monkeypatch, capsys
) -> None:
    real = dl.tqdm

    class Interrupting(real):
        def update(self, n=1):
            if self.total and self.n + n >= 600:
                raise KeyboardInterrupt
            return super().update(n)

    monkeypatch.setattr(dl, "tqdm", Interrupting)
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "train"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.rstrip().endswith("interrupted") and "rerun the same command to resume" in err
    partial = tmp_path / "archives" / f"{TRAIN_INPUT}.partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(isic2018[TRAIN_INPUT])
    assert partial.read_bytes() == isic2018[TRAIN_INPUT][:kept]
    assert not (tmp_path / "archives" / TRAIN_INPUT).exists()
    monkeypatch.setattr(dl, "tqdm", real)
    assert main(args) == 0
    assert (f"/mirror/2018/{TRAIN_INPUT}", f"bytes={kept}-") in server.requests
    assert (tmp_path / "archives" / TRAIN_INPUT).read_bytes() == isic2018[TRAIN_INPUT]


def _symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "climbs out"),
        ("ok/../../evil.txt", "climbs out"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("..\\evil.txt", "climbs out"),
        ("link", "symbolic link"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, name: str, why: str
) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg", _image(0))
        if name == "link":
            zf.writestr(_symlink_member("ISIC2018_Task1-2_Training_Input/link", "/etc"), "/etc")
        else:
            zf.writestr(zipfile.ZipInfo(name), b"evil")
    into = tmp_path / "deep" / "into"
    into.mkdir(parents=True)
    with pytest.raises(DataError, match=why) as info:
        dl.extract_zip(archive, into)
    assert "refusing to unpack" in str(info.value) and str(archive) in str(info.value)
    assert list(into.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/evil.txt").exists()


def test_an_unsafe_served_archive_leaves_nothing_behind(
    tmp_path: Path, server: Server, monkeypatch, capsys
) -> None:
    counts = {"valid": 2}
    archives = isic_archives("isic2018", counts)
    name = "ISIC2018_Task1_Validation_GroundTruth.zip"
    archives[name] = _with_member(archives[name], "../evil.txt", b"evil")
    publish(monkeypatch, server, "isic2018", archives, counts)
    root = tmp_path / "root"
    args = ["data", "download", "isic2018", "--to", str(root), "--splits", "valid"]
    assert main(args + ["--mirror", server.url()]) == 2
    assert "'../evil.txt' climbs out" in capsys.readouterr().err
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "ISIC2018_Task1_Validation_GroundTruth").exists()
    assert not list(root.glob(".unpacking-*"))


def test_zip_bombs_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()  # incompressible
    cases = {  # one member bombs (the whole archive's ratio is under 100), or the whole does
        "member": ({"x/noise.bin": noise, "x/zeros.bin": bytes(4 * 2**20)}, "member 'x/zeros"),
        "whole": ({f"x/{i}.bin": bytes(2**19) for i in range(8)}, "it would unpack to 4.2 MB"),
    }
    into = tmp_path / "into"
    into.mkdir()
    for name, (members, message) in cases.items():
        bomb = tmp_path / f"{name}.zip"
        bomb.write_bytes(_zip(members))
        with pytest.raises(DataError, match=r"ratio \d+ > 100: a zip bomb") as info:
            dl.extract_zip(bomb, into)
        assert message in str(info.value)
    normal = tmp_path / "normal.zip"
    normal.write_bytes(_zip({f"x/{i}.jpg": _image(i) for i in range(3)}))
    with pytest.raises(DataError, match="more than the cap of 100 bytes"):
        dl.extract_zip(normal, into, max_bytes=100)
    assert list(into.iterdir()) == []
    assert dl.extract_zip(normal, into) == 3  # the same archive within the caps


def test_an_archive_of_too_many_members_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch
) -> None:
    """Empty members pass every size and ratio check: their number is capped."""
    monkeypatch.setattr(dl, "MAX_MEMBERS", 50)  # the rule, at a size a test can build
    into = tmp_path / "into"
    into.mkdir()
    many = tmp_path / "many.zip"
    many.write_bytes(_zip({f"x/{i}.txt": b"" for i in range(51)}))
    with pytest.raises(DataError, match="it holds 51 members, more than the cap of 50"):
        dl.extract_zip(many, into)
    assert list(into.iterdir()) == []
    for i in range(51):  # what an external tool (the RAR path) unpacked is counted too
        (into / f"{i}.txt").write_bytes(b"")
    with pytest.raises(DataError, match="it unpacked 51 members, more than the cap of 50"):
        dl.check_tree(into)


def test_a_folder_inside_an_isic_archive_is_refused(
    tmp_path: Path, server: Server, monkeypatch, capsys
) -> None:
    """ISIC's archives hold files only; a junk folder would land inside the dataset."""
    counts = {"valid": 2}
    archives = isic_archives("isic2018", counts)
    name = "ISIC2018_Task1-2_Validation_Input.zip"
    folder = name.removesuffix(".zip")
    archives[name] = _with_member(archives[name], f"{folder}/junk/ISIC_9999999.jpg", _image(9))
    publish(monkeypatch, server, "isic2018", archives, counts)
    root = tmp_path / "root"
    args = ["data", "download", "isic2018", "--to", str(root), "--splits", "valid"]
    assert main(args + ["--mirror", server.url()]) == 2
    err = capsys.readouterr().err
    assert f"its folder {folder} holds folder(s) junk; the published archive holds files" in err
    assert not (root / folder).exists() and not list(root.glob(".unpacking-*"))


def test_a_wrong_count_names_the_folder_and_installs_nothing(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], monkeypatch, capsys
) -> None:
    monkeypatch.setitem(dl.EXPECTED_COUNTS, "isic2018", {**COUNTS_2018, "train": 4})
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "train"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ISIC2018_Task1-2_Training_Input (from" in err and "expected 4 images, found 3" in err
    assert not (tmp_path / "ISIC2018_Task1-2_Training_Input").exists()
    assert not list(tmp_path.glob(".unpacking-*"))


def test_splits_selection_and_2017_extras_not_counted(
    tmp_path: Path, server: Server, monkeypatch
) -> None:
    counts = {"train": 2, "valid": 2, "test": 3}
    archives = isic_archives("isic2017", counts)
    publish(monkeypatch, server, "isic2017", archives, counts, "md5", sizes=False)
    monkeypatch.setenv(dl.MIRROR_ENV, server.url())
    assert (
        main(["data", "download", "isic2017", "--to", str(tmp_path), "--splits", "valid,test"]) == 0
    )
    assert sorted(server.paths()) == sorted(
        f"/mirror/2017/ISIC-2017_{s}_{k}.zip"
        for s in ("Validation", "Test_v2")
        for k in ("Data", "Part1_GroundTruth")
    )
    assert not (tmp_path / "ISIC-2017_Training_Data").exists()
    assert len(find_pairs(tmp_path, "isic2017", "test")) == 3
    assert (tmp_path / "ISIC-2017_Test_v2_Data" / "ISIC_0000004_superpixels.png").is_file()


def test_isic2016_and_other_folder_names_become_the_layout(
    tmp_path: Path, server: Server, monkeypatch
) -> None:
    """An archive whose one folder has another name (or no folder) still lands as the layout's
    folder: the 2017 test archives must become ``ISIC-2017_Test_v2_*``, which layouts reads."""
    counts = {"train": 2, "test": 2}
    archives = isic_archives("isic2016", counts)
    images, masks = dl.archives_of("isic2016")["test"]
    for archive, rename in ((images, "ISIC_Test_Data"), (masks, "")):
        with zipfile.ZipFile(io.BytesIO(archives[archive.file])) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        prefix = f"{rename}/" if rename else ""
        archives[archive.file] = _zip({prefix + n.split("/", 1)[1]: d for n, d in members.items()})
    publish(monkeypatch, server, "isic2016", archives, counts, "md5", sizes=False)
    dl.download("isic2016", tmp_path, mirrors=[server.url()], progress=False)
    for split in counts:
        assert len(find_pairs(tmp_path, "isic2016", split)) == 2
    assert (tmp_path / "ISBI2016_ISIC_Part1_Test_GroundTruth").is_dir()
    assert not (tmp_path / "ISIC_Test_Data").exists()


def test_isic2016_has_no_valid_split(tmp_path: Path, server: Server, capsys) -> None:
    args = ["data", "download", "isic2016", "--to", str(tmp_path / "x"), "--splits", "valid"]
    assert main(args + ["--mirror", server.url()]) == 2
    err = capsys.readouterr().err
    assert "isic2016 has no 'valid' split; it has train, test" in err
    assert server.requests == [] and not (tmp_path / "x").exists()
    assert main(["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "tran"]) == 2
    assert "unknown split(s) tran" in capsys.readouterr().err


def test_ph2_needs_the_terms_accepted(tmp_path: Path, server: Server, capsys) -> None:
    root = tmp_path / "ph2"
    assert main(["data", "download", "ph2", "--to", str(root), "--mirror", server.url()]) == 2
    out, err = capsys.readouterr()
    assert "research and education only" in out and "Mendonça" in out and "EMBC" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--accept-terms" in lines[0]
    assert server.requests == [] and not root.exists()
    assert main(["data", "download", "ph2", "--to", str(root), "--splits", "train"]) == 2
    assert "without --splits" in capsys.readouterr().err


def _fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!{sys.executable}\nimport sys, os, zipfile\n{body}\n")
    tool.chmod(0o755)
    return tool


def test_rar_tool_detection_and_install_help(
    tmp_path: Path, server: Server, monkeypatch, capsys
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert dl.find_rar_tool() is None
    args = ["data", "download", "ph2", "--to", str(tmp_path / "ph2"), "--accept-terms"]
    assert main(args + ["--mirror", server.url()]) == 2
    err = capsys.readouterr().err
    assert "no tool that unpacks RAR archives" in err
    for hint in (
        "apt-get install libarchive-tools",
        "apt-get install unrar",
        "p7zip-full",
        "brew install",
    ):
        assert hint in err
    assert server.requests == []  # checked before downloading anything

    bin_dir = tmp_path / "bin"
    seven = _fake_tool(bin_dir, "7z", "")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert dl.find_rar_tool() == ("7z", str(seven))
    unrar = _fake_tool(bin_dir, "unrar", "")
    assert dl.find_rar_tool() == ("unrar", str(unrar))  # the first choice when several are there


UNZIP_LIKE_UNRAR = """
if sys.argv[1] == "lt":  # unrar's technical listing, of the zip it is given
    print("Archive: " + sys.argv[-1] + "\\nDetails: RAR 5\\n")
    for info in zipfile.ZipFile(sys.argv[-1]).infolist():
        kind = "Directory" if info.is_dir() else "File"
        size = info.file_size
        print(f"        Name: {info.filename}\\n        Type: {kind}\\n        Size: {size}\\n")
    sys.exit(0)
archive, dest = sys.argv[-2], sys.argv[-1]
assert sys.argv[1] == "x" and dest.endswith(os.sep)
zipfile.ZipFile(archive).extractall(dest)
"""


def test_ph2_with_a_fake_unrar(tmp_path: Path, server: Server, monkeypatch, capsys) -> None:
    data = ph2_archive(3)
    publish(monkeypatch, server, "ph2", {"PH2Dataset.rar": data}, {"all": 3})
    _fake_tool(tmp_path / "bin", "unrar", UNZIP_LIKE_UNRAR)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    root = tmp_path / "ph2"
    args = [
        "data",
        "download",
        "ph2",
        "--to",
        str(root),
        "--accept-terms",
        "--mirror",
        server.url(),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "using unrar" in out and "Mendonça" in out
    assert f"its SHA-256 is {hashlib.sha256(data).hexdigest()}" in out  # none is published
    assert len(find_pairs(root, "ph2")) == 3
    assert (root / "PH2Dataset" / "PH2 Dataset images").is_dir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no tool needed once unpacked
    assert main(args) == 0 and len(server.requests) == 1


def test_ph2_a_symlink_from_the_tool_is_refused(
    tmp_path: Path, server: Server, monkeypatch, capsys
) -> None:
    publish(monkeypatch, server, "ph2", {"PH2Dataset.rar": ph2_archive(2)}, {"all": 2})
    body = UNZIP_LIKE_UNRAR + "os.symlink('/etc', os.path.join(dest, 'PH2Dataset', 'etc'))"
    _fake_tool(tmp_path / "bin", "unrar", body)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    root = tmp_path / "ph2"
    args = [
        "data",
        "download",
        "ph2",
        "--to",
        str(root),
        "--accept-terms",
        "--mirror",
        server.url(),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "PH2Dataset.rar: refusing to unpack" in err and "'PH2Dataset/etc' is a symbolic link" in err
    )
    assert sorted(p.name for p in root.iterdir()) == [".download.lock", "archives"]


def test_ph2_a_link_in_the_listing_is_refused_before_unpacking(
    tmp_path: Path, server: Server, monkeypatch, capsys
) -> None:
    """The tool lists the archive first: a symbolic link in the listing stops it before it
    unpacks anything (the fake unrar leaves a marker when asked to unpack)."""
    publish(monkeypatch, server, "ph2", {"PH2Dataset.rar": ph2_archive(2)}, {"all": 2})
    marker = tmp_path / "unpacked"
    lists_a_link = UNZIP_LIKE_UNRAR.replace(
        "    sys.exit(0)",
        "    print('        Name: PH2Dataset/etc\\n        Type: Unix symbolic link\\n"
        "        Size: 4\\n')\n    sys.exit(0)",
    ).replace("archive, dest =", f"open({str(marker)!r}, 'w').close()\narchive, dest =")
    _fake_tool(tmp_path / "bin", "unrar", lists_a_link)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    args = ["data", "download", "ph2", "--to", str(tmp_path / "ph2"), "--accept-terms"]
    assert main([*args, "--mirror", server.url()]) == 2
    err = capsys.readouterr().err
    assert "refusing to unpack" in err and "'PH2Dataset/etc' is not a file or a folder" in err
    assert "Unix symbolic link" in err and not marker.exists()


@pytest.mark.parametrize("tool", ["bsdtar", "7z"])
def test_a_real_tools_listing_is_checked_before_it_unpacks(
    tmp_path: Path, monkeypatch, tool: str
) -> None:
    """bsdtar's and 7z's own listings, read and held to the zip path's rules before anything is
    unpacked: the member cap, the size cap, free space, and links."""
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed (apt-get install libarchive-tools / p7zip-full)")
    archive = tmp_path / "PH2Dataset.rar"
    archive.write_bytes(ph2_archive(3))
    members = dl.list_with_tool((tool, found), archive)
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    files = {m.name: m.size for m in members if m.kind == "file"}
    assert files == {i.filename: i.file_size for i in infos}  # every file, its true size
    into = tmp_path / "into"
    into.mkdir()
    total = sum(files.values())
    for patch, says in [
        (("MAX_MEMBERS", len(members) - 1), "more than the cap"),
        (("MAX_UNPACKED_BYTES", total - 1), "its listing declares"),
    ]:
        with monkeypatch.context() as m:
            m.setattr(dl, *patch)
            with pytest.raises(DataError, match=says):
                dl.extract_with_tool((tool, found), archive, into)
        assert not any(into.iterdir()), "unpacked before the listing was checked"
    with monkeypatch.context() as m:
        m.setattr(dl.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10, 10, total - 1))
        with pytest.raises(DataError, match="not enough free disk space"):
            dl.extract_with_tool((tool, found), archive, into)
    assert not any(into.iterdir())
    linked = tmp_path / "linked"
    (linked / "PH2Dataset").mkdir(parents=True)
    (linked / "PH2Dataset" / "etc").symlink_to("/etc")
    tarball = tmp_path / "linked.rar"  # a tar under a RAR's name: both tools read tar too
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(linked), "PH2Dataset"], check=True)
    with pytest.raises(DataError, match="'PH2Dataset/etc' is not a file or a folder"):
        dl.extract_with_tool((tool, found), tarball, into)
    assert not any(into.iterdir())
    dl.extract_with_tool((tool, found), archive, into)  # within every limit: unpacked
    unpacked = {p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file()}
    assert unpacked == set(files)


@pytest.mark.parametrize("tool", ["bsdtar", "7z"])
def test_ph2_with_a_real_tool(tmp_path: Path, server: Server, monkeypatch, tool: str) -> None:
    """A zip named PH2Dataset.rar: bsdtar and 7z read zip archives as well as RAR ones."""
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed (apt-get install libarchive-tools / p7zip-full)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))  # this tool only
    publish(monkeypatch, server, "ph2", {"PH2Dataset.rar": ph2_archive(4)}, {"all": 4})
    root = tmp_path / "ph2"
    dl.download("ph2", root, accept_terms=True, mirrors=[server.url()], progress=False)
    pairs = find_pairs(root, "ph2")
    assert [p[0].name for p in pairs] == [f"IMD00{i}.bmp" for i in range(1, 5)]
    assert not list(root.glob(".unpacking-*"))


def test_delete_archives_and_reverify(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "valid"]
    assert main(args) == 0
    store = tmp_path / "archives"
    name = "ISIC2018_Task1-2_Validation_Input.zip"
    shutil.rmtree(tmp_path / "ISIC2018_Task1-2_Validation_Input")
    n = len(server.requests)
    assert main(args + ["--reverify"]) == 0  # hashed again, unpacked again, not downloaded
    assert len(server.requests) == n and f"{name}: verified" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "ISIC2018_Task1-2_Validation_Input")
    (store / name).write_bytes(b"x" * len(isic2018[name]))
    assert main(args + ["--reverify"]) == 2
    assert "does not match its published checksum" in capsys.readouterr().err
    assert (store / name).exists()  # a complete file is never deleted by us
    (store / name).unlink()
    assert main(args + ["--delete-archives"]) == 0
    assert not (store / name).exists() and not (store / f"{name}.verified").exists()
    assert len(find_pairs(tmp_path, "isic2018", "valid")) == 2


def test_an_existing_folder_with_a_wrong_count_is_reported(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], capsys
) -> None:
    (tmp_path / "ISIC2018_Task1-2_Validation_Input").mkdir()
    args = ["data", "download", "isic2018", "--to", str(tmp_path), "--splits", "valid"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ISIC2018_Task1-2_Validation_Input: expected 2 images, found 0" in err
    assert "delete it and rerun" in err and server.requests == []


def test_on_colab_a_chapter_without_data_dir_downloads_its_dataset_once(
    tmp_path: Path, server: Server, isic2018: dict[str, bytes], monkeypatch
) -> None:
    """The colab profile's first cell, on Colab (a stub ``google.colab``) and without
    ``data_dir``: the paper's dataset is downloaded to the machine's disk and becomes
    ``data_dir``; a rerun downloads nothing. PH2 waits for its terms to be accepted. Off Colab
    the same call asks for ``data_dir``."""
    import sys
    import types

    from lessons_lib.errors import DataError
    from lessons_lib.recipes import get_recipe

    recipe = get_recipe("002_resnet34_unet")  # the colab profile: the paper's ISIC 2018
    with pytest.raises(DataError, match="needs data_dir"):
        recipe.resolve("colab", {"pretrained": False})
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    monkeypatch.setenv("LESSONS_COLAB_DATA", str(tmp_path / "content"))
    P = recipe.resolve("colab", {"pretrained": False})  # noqa: N806
    root = tmp_path / "content" / "isic2018"
    assert P.data_dir == str(root)
    for split, n in COUNTS_2018.items():
        assert len(find_pairs(root, "isic2018", split)) == n
    assert not list((root / "archives").glob("*.zip"))  # deleted once unpacked
    before = len(server.requests)
    assert recipe.resolve("colab", {"pretrained": False}).data_dir == str(root)
    assert len(server.requests) == before
    with pytest.raises(DataError, match="terms of use") as err:
        get_recipe("000_lesionseg").resolve("laptop", {})
    assert "data download ph2 --accept-terms --to" in str(err.value)
