"""lessons_lib.leaderboard on runs written into tmp_path (and the Leaderboard notebook on them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from lessons_lib import leaderboard as lb

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]


def write_run(
    runs: Path,
    chapter: str,
    profile: str = "smoke",
    dataset: str = "synthetic",
    results: dict | None = None,
    params: dict | None = None,
    **extra,
) -> Path:
    """A run folder as chapter.Run writes it: metrics.json and per_image_<name>.csv."""
    out = runs / chapter / f"{profile}-{dataset}"
    out.mkdir(parents=True)
    results = results or {"valid": {"a": 0.9, "b": 0.5, "c": 0.1}}
    record_results = []
    for name, scores in results.items():
        frame = pd.DataFrame(
            {
                "jaccard": scores,
                "dice": {k: 2 * v / (1 + v) for k, v in scores.items()},
                "threshold_jaccard": {k: v if v >= 0.65 else 0.0 for k, v in scores.items()},
            }
        )
        frame.index.name = "image_id"
        frame.to_csv(out / f"per_image_{name}.csv")
        means = frame.mean().to_dict()
        record_results.append(
            {
                "name": name,
                "split": f"{name} split",
                "metrics": {**means, "accuracy": 0.9, "n_images": len(frame)},
                "reported": {"jaccard": 0.8},
            }
        )
    record = {
        "chapter": chapter,
        "paper": f"paper of {chapter}",
        "dataset": dataset,
        "profile": profile,
        "params": {"profile": profile, "dataset": dataset, "seed": 0, "epochs": [2, 1]}
        | (params or {}),
        "results": record_results,
        "wall_time_s": 125.0,
        "environment": {"device": "cpu"},
        "finished": "2024-01-01T00:00:00+0000",
        **extra,
    }
    (out / "metrics.json").write_text(json.dumps(record))
    return out


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_run(root, "001_cdnn", n_parameters=5_042_589)
    write_run(
        root,
        "002_unet",
        results={"valid": {"a": 0.7, "b": 0.6, "c": 0.3, "d": 0.9}, "test": {"x": 0.8}},
    )
    write_run(root, "002_unet", profile="full", dataset="isic2018")
    return root


def test_collect_runs_one_row_per_evaluation(runs: Path):
    df = lb.collect_runs(runs)
    assert len(df) == 4
    assert set(df["chapter"]) == {"001_cdnn", "002_unet"}
    row = df[(df["chapter"] == "001_cdnn")].iloc[0]
    assert row["jaccard"] == pytest.approx(0.5)
    assert row["n_images"] == 3
    assert row["n_parameters"] == 5_042_589
    assert row["wall_time_s"] == 125.0
    assert row["reported"] == {"jaccard": 0.8}
    assert row["run"] == runs / "001_cdnn" / "smoke-synthetic"
    assert "epochs=[2, 1]" in row["settings"] and "profile" not in row["settings"]
    assert pd.isna(df[df["chapter"] == "002_unet"]["n_parameters"]).all()


def test_collect_runs_skips_broken_files_naming_them(runs: Path):
    bad = runs / "003_bad" / "smoke-synthetic"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text("{not json")
    no_results = runs / "004_half" / "smoke-synthetic"
    no_results.mkdir(parents=True)
    (no_results / "metrics.json").write_text(json.dumps({"chapter": "004_half"}))
    write_run(runs, "005_partial")
    partial = runs / "005_partial" / "smoke-synthetic" / "metrics.json"
    record = json.loads(partial.read_text())
    record["results"].append({"name": "broken"})
    partial.write_text(json.dumps(record))
    with pytest.warns(lb.RunWarning) as caught:
        df = lb.collect_runs(runs)
    messages = " ".join(str(w.message) for w in caught)
    assert str(bad / "metrics.json") in messages and "not valid JSON" in messages
    assert str(no_results / "metrics.json") in messages and "results" in messages
    assert "result 1 has no 'metrics'" in messages
    assert len(df) == 5  # the 4 good evaluations and 005's good one


def test_collect_runs_empty_or_missing_folder(tmp_path: Path):
    for folder in (tmp_path, tmp_path / "nowhere"):
        df = lb.collect_runs(folder)
        assert df.empty and "jaccard" in df.columns
        assert lb.leaderboard_table(df).empty
        assert lb.reported_table(df).empty
        assert lb.per_image_scores(df) == {}
        assert lb.best_pair(df) is None


def test_collect_runs_defaults_to_lessons_runs(runs: Path, monkeypatch):
    monkeypatch.setenv("LESSONS_RUNS", str(runs))
    assert len(lb.collect_runs()) == 4


def test_tables(runs: Path):
    df = lb.collect_runs(runs)
    table = lb.leaderboard_table(df)
    assert list(table.columns[:4]) == ["method", "dataset", "split", "profile"]
    assert {"JA", "thresholded JA", "Dice", "AC", "SE", "SP", "parameters", "run time"} <= set(
        table.columns
    )
    synthetic = table[table["dataset"] == "synthetic"]
    assert list(synthetic["JA"]) == sorted(synthetic["JA"], reverse=True)
    assert "5,042,589" in set(table["parameters"])
    assert set(table["run time"]) == {"2.1 min"}
    reported = lb.reported_table(df)
    assert len(reported) == 4 and set(reported["metric"]) == {"JA"}
    row = reported[reported["method"] == "001_cdnn"].iloc[0]
    assert row["paper"] == 0.8 and row["ours - paper"] == pytest.approx(0.5 - 0.8)
    assert len(lb.filter_runs(df, profile="full")) == 1
    assert len(lb.filter_runs(df, profile=None, dataset="synthetic")) == 3


def test_method_names(tmp_path: Path):
    write_run(tmp_path, "001_cdnn", method="CDNN-29")
    write_run(tmp_path, "002_unet")
    write_run(tmp_path, "data_and_metrics")
    path = tmp_path / "data_and_metrics" / "smoke-synthetic" / "metrics.json"
    record = json.loads(path.read_text())
    record["results"][0]["method"] = "otsu"
    path.write_text(json.dumps(record))
    assert sorted(lb.collect_runs(tmp_path)["method"]) == ["002_unet", "CDNN-29", "otsu"]


def test_labels_are_unique(tmp_path: Path):
    write_run(tmp_path / "one", "001_cdnn")
    write_run(tmp_path / "two", "001_cdnn")
    df = lb.collect_runs(tmp_path)
    assert lb.labels(df).is_unique


def test_per_image_and_pairs(runs: Path):
    df = lb.collect_runs(runs)
    scores = lb.per_image_scores(df)
    assert len(scores) == 4
    label = lb.labels(df)[df["chapter"] == "001_cdnn"].iloc[0]
    assert list(scores[label].index) == ["a", "b", "c"]
    i, j, n = lb.best_pair(df)
    assert {df.iloc[i]["chapter"], df.iloc[j]["chapter"]} == {"001_cdnn", "002_unet"}
    assert n == 3 and df.iloc[i]["dataset"] == df.iloc[j]["dataset"] == "synthetic"
    pair = lb.paired_scores(
        lb.load_per_image(df.iloc[i]), lb.load_per_image(df.iloc[j]), names=("x", "y")
    )
    assert list(pair.columns) == ["x", "y"] and sorted(pair.index) == ["a", "b", "c"]
    worst = lb.worst_table(scores, k=2)
    assert len(worst) == 7  # two per evaluation, one for the 1-image test set
    assert worst.iloc[0]["image_id"] == "c"
    for fig in (lb.plot_distributions(scores), lb.plot_pair(pair)):
        assert fig.axes
        matplotlib.pyplot.close(fig)


def test_pairs_only_on_the_same_images(tmp_path: Path):
    write_run(tmp_path, "001_cdnn", params={"n_synth": 32})
    write_run(tmp_path, "002_unet", params={"n_synth": 64})  # other synthetic images, same ids
    df = lb.collect_runs(tmp_path)
    assert df["data"].nunique() == 2
    assert lb.best_pair(df) is None
    write_run(tmp_path, "003_fcn", dataset="isic2017")
    write_run(tmp_path, "004_slsdeep", dataset="isic2017", params={"n_synth": 1})
    i, j, _ = lb.best_pair(lb.collect_runs(tmp_path))
    assert lb.collect_runs(tmp_path).iloc[[i, j]]["dataset"].tolist() == ["isic2017"] * 2


def test_missing_per_image_csv_warns(runs: Path):
    (runs / "001_cdnn" / "smoke-synthetic" / "per_image_valid.csv").unlink()
    df = lb.collect_runs(runs)
    with pytest.warns(lb.RunWarning, match="per_image_valid.csv"):
        scores = lb.per_image_scores(df)
    assert len(scores) == 3


@pytest.mark.notebooks
@pytest.mark.parametrize("with_runs", [True, False], ids=["runs", "no-runs"])
def test_leaderboard_notebook(runs: Path, tmp_path: Path, with_runs: bool):
    """The chapter runs on runs (table, distributions, scatter) and without any."""
    if not with_runs:
        shutil.rmtree(runs)
    out = tmp_path / "leaderboard.ipynb"
    cmd = [sys.executable, "-m", "papermill", "leaderboard.ipynb", str(out)]
    cmd += ["-p", "runs_dir", str(runs), "--no-progress-bar"]
    proc = subprocess.run(cmd, cwd=REPO / "notebooks", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    if with_runs:
        assert "001_cdnn" in text and "shared images" in text and "image/png" in text
    else:
        assert "No runs yet" in text


def test_headline_keeps_reported_evaluations(tmp_path: Path):
    write_run(tmp_path, "001_cdnn", results={"fold0": {"a": 0.5}, "test": {"b": 0.7}})
    record_path = tmp_path / "001_cdnn" / "smoke-synthetic" / "metrics.json"
    record = json.loads(record_path.read_text())
    record["results"][0]["reported"] = {}  # the paper reports no per-fold number
    record_path.write_text(json.dumps(record))
    write_run(tmp_path, "004_fcn", results={"valid": {"a": 0.5}, "test": {"b": 0.7}})
    record_path = tmp_path / "004_fcn" / "smoke-synthetic" / "metrics.json"
    record = json.loads(record_path.read_text())
    for result in record["results"]:
        result["reported"] = {}  # a paper without numbers: keep everything
    record_path.write_text(json.dumps(record))
    df = lb.headline(lb.collect_runs(tmp_path))
    assert sorted(zip(df["chapter"], df["evaluation"], strict=True)) == [
        ("001_cdnn", "test"),
        ("004_fcn", "test"),
        ("004_fcn", "valid"),
    ]
    assert lb.headline(lb.collect_runs(tmp_path / "none")).empty
