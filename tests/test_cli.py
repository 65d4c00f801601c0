"""python -m lessons_lib: data synth / prepare / check, and score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lessons_lib.cli import main


def test_synth_writes_an_isic2017_layout(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["data", "synth", "--out", str(root), "--n", "4", "--size", "64", "--seed", "1"]
    assert main(args) == 0
    assert len(list((root / "ISIC-2017_Training_Data").glob("ISIC_*[0-9].jpg"))) == 4
    assert json.loads((root / "synth.json").read_text())["seed"] == 1


def test_check_good_and_bad(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "check", "--dataset", "synthetic", "--root", str(synthetic_root)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(synthetic_root, bad)
    victim = sorted((bad / "ISIC-2017_Training_Data").glob("ISIC_*[0-9].jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    (bad / "ISIC-2017_Validation_Part1_GroundTruth").joinpath(
        sorted(p.name for p in (bad / "ISIC-2017_Validation_Part1_GroundTruth").iterdir())[0]
    ).unlink()
    assert (
        main(["data", "check", "--dataset", "isic2017", "--root", str(bad), "--workers", "1"]) == 1
    )
    out = capsys.readouterr().out
    assert out.count("PROBLEM") == 2 and victim.name in out


def test_prepare(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    args = [
        "data",
        "prepare",
        "--dataset",
        "synthetic",
        "--root",
        str(synthetic_root),
        "--size",
        "32",
    ]
    assert main(args + ["--out", str(tmp_path / "p"), "--split", "train"]) == 0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert {e["split"] for e in manifest["entries"]} == {"train"} and manifest["size"] == 32


def test_score_text_and_json(synthetic_root: Path, capsys) -> None:
    truth = synthetic_root / "ISIC-2017_Test_v2_Part1_GroundTruth"
    assert main(["score", str(truth), str(truth), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["summary"]["jaccard"] == 1.0
    assert main(["score", str(truth), str(truth)]) == 0
    assert "jaccard" in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lessons_lib",
            "data",
            "check",
            "--dataset",
            "ph2",
            "--root",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "does not exist" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "lessons_lib", "score", str(tmp_path), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    )


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``data cache | head``: the pipe is closed before the command writes; it ends quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lessons_lib", "data", "cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LESSONS_CACHE": str(tmp_path)},
    )
    proc.stdout.close()  # long before the interpreter has imported the library and printed
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
