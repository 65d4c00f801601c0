"""lessons_lib.book.leaderboard on runs written into tmp_path (and the Leaderboard notebook)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from torch import nn

from lessons_lib import metrics, viz
from lessons_lib.book import leaderboard as lb
from lessons_lib.cost import Stage, estimate_cost
from lessons_lib.metrics.statistics import (
    bootstrap_ci,
    format_ci,
    paired_difference,
    pooled_bootstrap_ci,
)
from lessons_lib.record import REPORTED_METRICS, SCHEMA_VERSION, Result, RunRecord
from lessons_lib.reported import NOT_STATED, ORIGINAL, Reported

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[2]


def write_run(
    runs: Path,
    chapter: str,
    profile: str = "smoke",
    dataset: str = "synthetic",
    results: dict[str, dict[str, float]] | None = None,
    params: dict | None = None,
    reported: dict[str, dict[str, float]] | None = None,
    method: str | None = None,
    data_identity: str | None = None,
    n_parameters: int | None = None,
    details: dict | None = None,
    gpu: tuple[str, float] | None = None,
    finished: str = "2024-01-01T00:00:00+0000",
) -> Path:
    """A run folder as chapter.Run writes it: a RunRecord's metrics.json and per_image_<name>.csv.

    Args:
        results: ``{evaluation: {image_id: jaccard}}``.
        reported: ``{evaluation: paper's numbers}`` (per-image means at original size);
            evaluations not named report JA 0.8.
        method: Every result's ``method`` (an ablation's name).
        data_identity: The record's; default ``<dataset>:default`` (runs on the same images).
        details: The record's ``details`` (e.g. a ``cost_estimate``).
        gpu: ``(name, peak memory in GiB)`` of a run on a GPU; default a CPU run.
    """
    out = runs / chapter / f"{profile}-{dataset}"
    out.mkdir(parents=True)
    results = results or {"valid": {"a": 0.9, "b": 0.5, "c": 0.1}}
    reported = reported or {}
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
            Result(
                name=name,
                evaluated_on=f"{name} split",
                metrics={**means, "accuracy": 0.9, "n_images": len(frame)},
                reported=[
                    Reported(m, v, "per_image", ORIGINAL, dataset, name, "Table 1")
                    for m, v in reported.get(name, {"jaccard": 0.8}).items()
                ],
                method=method,
            )
        )
    RunRecord(
        chapter=chapter,
        paper=f"paper of {chapter}",
        dataset=dataset,
        profile=profile,
        params={"profile": profile, "dataset": dataset, "seed": 0, "epochs": [2, 1]}
        | (params or {}),
        results=record_results,
        data_identity=data_identity or f"{dataset}:default",
        n_parameters=n_parameters,
        weights_source=None,
        wall_time_s=125.0,
        timings_s={},
        environment={"device": "cpu"} if gpu is None else {"device": "cuda", "gpu": gpu[0]},
        finished=finished,
        gpu_peak_memory_gb=None if gpu is None else gpu[1],
        details=details or {},
    ).write(out / "metrics.json")
    return out


def edit_record(run: Path, edit) -> Path:
    """Rewrite ``run``'s metrics.json as plain JSON after ``edit(record_dict)``."""
    path = run / "metrics.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


def cost_estimate(epochs: int = 10) -> dict:
    """A real :meth:`CostEstimate.as_dict` of a small network: two stages, then prediction."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    stages = [Stage("small", 8, 4, epochs, 100), Stage("large", (16, 12), 2, epochs, 100)]
    return estimate_cost(net, stages, predicted_images=10).as_dict()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_run(
        root,
        "001_cdnn",
        n_parameters=5_042_589,
        details={"cost_estimates": {"full": cost_estimate()}},
    )
    write_run(
        root,
        "002_unet",
        results={"valid": {"a": 0.7, "b": 0.6, "c": 0.3, "d": 0.9}, "test": {"x": 0.8}},
    )
    write_run(root, "002_unet", profile="full", dataset="isic2018")
    return root


def test_names_come_from_the_one_schema() -> None:
    assert lb.METRICS == REPORTED_METRICS
    assert lb.LABELS is metrics.METRIC_LABELS


def test_read_records_round_trip(runs: Path) -> None:
    found = lb.read_records(runs)
    assert [p.relative_to(runs).parent.as_posix() for p, _ in found] == [
        "001_cdnn/smoke-synthetic",
        "002_unet/full-isic2018",
        "002_unet/smoke-synthetic",
    ]
    path, record = found[0]
    assert record == RunRecord.read(path)
    assert record.n_parameters == 5_042_589 and record.data_identity == "synthetic:default"
    assert [r.name for r in found[2][1].results] == ["valid", "test"]


def test_collect_runs_one_row_per_evaluation(runs: Path):
    df = lb.collect_runs(runs)
    assert len(df) == 4
    assert set(df["chapter"]) == {"001_cdnn", "002_unet"}
    row = df[(df["chapter"] == "001_cdnn")].iloc[0]
    assert row["method"] == "001_cdnn"  # no result.method: the chapter
    assert row["paper"] == "paper of 001_cdnn" and row["evaluated on"] == "valid split"
    assert row["jaccard"] == pytest.approx(0.5)
    assert row["accuracy"] == 0.9 and np.isnan(row["sensitivity"])  # not in the metrics
    assert row["n_images"] == 3
    assert row["n_parameters"] == 5_042_589
    assert row["wall_time_s"] == 125.0
    assert row["device"] == "cpu"
    assert [(r.metric, r.value) for r in row["reported"]] == [("jaccard", 0.8)]
    assert row["data"] == "synthetic:default"
    assert row["run"] == runs / "001_cdnn" / "smoke-synthetic"
    assert "epochs=[2, 1]" in row["settings"] and "profile" not in row["settings"]
    assert pd.isna(df[df["chapter"] == "002_unet"]["n_parameters"]).all()


def test_collect_runs_skips_records_of_another_schema_naming_them(runs: Path):
    """A metrics.json that is not a current RunRecord is skipped, the warning saying which file
    and why; the other runs are still read."""
    bad = runs / "003_bad" / "smoke-synthetic"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text("{not json")
    half = runs / "004_half" / "smoke-synthetic"
    half.mkdir(parents=True)
    (half / "metrics.json").write_text(json.dumps({"chapter": "004_half"}))
    old = edit_record(write_run(runs, "005_old"), lambda r: r.pop("schema"))
    newer = edit_record(write_run(runs, "006_newer"), lambda r: r.update(schema=99))
    no_identity = edit_record(write_run(runs, "007_no_identity"), lambda r: r.pop("data_identity"))
    extra = edit_record(write_run(runs, "008_extra"), lambda r: r.update(method="CDNN-29"))
    partial = edit_record(
        write_run(runs, "009_partial"), lambda r: r["results"].append({"name": "broken"})
    )
    hidden = write_run(runs / ".ipynb_checkpoints", "010_hidden")
    edit_record(hidden, lambda r: r.pop("schema"))
    with pytest.warns(lb.RunWarning) as caught:
        df = lb.collect_runs(runs)
    messages = [str(w.message) for w in caught]
    expected = {
        bad / "metrics.json": "not valid JSON",
        half / "metrics.json": "schema version None",
        old: f"schema version None, this library reads version {SCHEMA_VERSION}",
        newer: "schema version 99",
        no_identity: "missing field(s) data_identity",
        extra: "unknown field(s) method",
        partial: "result 1 has no 'metrics' mapping",
    }
    assert len(messages) == len(expected)  # nothing under .ipynb_checkpoints is read
    for path, why in expected.items():
        (message,) = [m for m in messages if f"skipping {path}:" in m]
        assert why in message, message
    assert all(w.category is lb.RunWarning for w in caught)
    assert len(df) == 4  # the fixture's 4 good evaluations; a broken record is skipped whole
    assert set(df["chapter"]) == {"001_cdnn", "002_unet"}


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
    assert list(table.columns[:3]) == ["method", "data", "evaluated on"]
    assert {"JA", "thresholded JA", "Dice", "AC", "SE", "SP", "images"} <= set(table.columns)
    synthetic = table[table["data"] == "synthetic (smoke)"]
    assert len(synthetic) == 3 and set(table["data"]) == {"synthetic (smoke)", "isic2018 (full)"}
    assert list(synthetic["JA"]) == sorted(synthetic["JA"], reverse=True)
    made = lb.run_table(df).set_index("method")  # one row per run: its cost and settings
    assert len(made) == 3 and made.loc["001_cdnn", "parameters"] == "5,042,589"
    assert set(made["run time"]) == {"2.1 min"} and set(made["GPU memory"]) == {""}
    assert set(made["RAM"]) == {""}  # records without the field (written before it existed)
    assert "epochs=[2, 1]" in made.loc["001_cdnn", "settings"]
    reported = lb.reported_table(df)
    assert len(reported) == 4 and set(reported["metric"]) == {"JA"}
    row = reported[reported["method"] == "001_cdnn"].iloc[0]
    assert row["paper"] == 0.8 and row["ours - paper"] == pytest.approx(0.5 - 0.8)
    assert len(lb.filter_runs(df, profile="full")) == 1
    assert len(lb.filter_runs(df, profile=None, dataset="synthetic")) == 3


def test_an_external_validation_is_a_column_of_its_run(tmp_path: Path):
    """The external result of a run stands beside that run's own rows (same method), not as a
    row; a run without one has it empty, and no run with one leaves the columns out."""
    plain = lb.leaderboard_table(lb.collect_runs(write_run(tmp_path / "a", "000_x").parent))
    assert "external JA" not in plain.columns
    run = write_run(
        tmp_path / "b",
        "002_y",
        results={"test": {"a": 0.9, "b": 0.7}, "external": {"p1": 0.6, "p2": 0.4, "p3": 0.5}},
    )
    write_run(tmp_path / "b", "003_z", results={"test": {"a": 0.2}})
    edit_record(run, lambda r: r["results"][1]["details"].update(external="ph2"))
    runs = lb.collect_runs(tmp_path / "b")
    assert list(runs["external"].fillna("-")) == ["-", "ph2", "-"]
    table = lb.leaderboard_table(runs).set_index("method")
    assert len(table) == 2  # the external result is not a row
    assert table.loc["002_y", "external JA"] == pytest.approx(0.5)
    assert table.loc["002_y", "external data"] == "ph2 (3)"
    assert np.isnan(table.loc["003_z", "external JA"]) and table.loc["003_z", "external data"] == ""
    assert table.loc["002_y", "JA"] == pytest.approx(0.8)  # its own row keeps its own score


def test_reported_table_only_lists_what_the_paper_reported(tmp_path: Path):
    write_run(
        tmp_path,
        "001_cdnn",
        results={"test": {"a": 0.6, "b": 0.8}},
        reported={"test": {"jaccard": 0.765, "accuracy": 0.934}},
    )
    table = lb.reported_table(lb.collect_runs(tmp_path))
    assert list(table["metric"]) == ["JA", "AC"]  # the paper's numbers only
    assert list(table["paper"]) == [0.765, 0.934]
    assert list(table["ours"]) == [0.7, 0.9]
    assert list(table["ours - paper"]) == pytest.approx([0.7 - 0.765, 0.9 - 0.934], abs=1e-3)
    assert set(table["paper computed as"]) == {"per image, at original size"}


def test_reported_table_never_subtracts_a_per_image_mean_from_a_pooled_number(tmp_path: Path):
    run = write_run(tmp_path, "003_sls", results={"test": {"a": 0.6, "b": 0.8}}, dataset="isic2017")

    def pooled(record: dict) -> None:
        result = record["results"][0]
        result["metrics"]["pooled_jaccard"] = 0.75
        result["reported"] = [
            Reported(
                "jaccard", 0.782, "pooled", NOT_STATED, "isic2017", "test", "Table 1"
            ).as_dict()
        ]

    edit_record(run, pooled)
    row = lb.reported_table(lb.collect_runs(tmp_path)).iloc[0]
    assert row["metric"] == "pooled JA" and row["ours"] == 0.75  # not the per-image 0.7
    assert row["ours - paper"] == pytest.approx(0.75 - 0.782)
    assert row["paper computed as"] == "pooled, resolution not stated"


def test_method_names(tmp_path: Path):
    write_run(tmp_path, "001_cdnn", method="CDNN-29")
    write_run(tmp_path, "002_unet")
    write_run(tmp_path, "data_and_metrics", method="otsu")
    write_run(tmp_path, "004_fcn", method="004_fcn (fusion=sum)")  # names its chapter already
    assert sorted(lb.collect_runs(tmp_path)["method"]) == [
        "001_cdnn: CDNN-29",  # an ablation's row says whose it is
        "002_unet",
        "004_fcn (fusion=sum)",
        "data_and_metrics: otsu",
    ]


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
    a, b = lb.load_per_image(df.iloc[i]), lb.load_per_image(df.iloc[j])
    pair = lb.paired_scores(a, b, names=("x", "y"))
    assert list(pair.columns) == ["x", "y"] and sorted(pair.index) == ["a", "b", "c"]
    worst = lb.worst_table(scores, k=2)
    assert len(worst) == 7  # two per evaluation, one for the 1-image test set
    assert worst.iloc[0]["image_id"] == "c"

    fig = viz.plot_ja_distribution(scores)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == list(scores)
    matplotlib.pyplot.close(fig)
    fig, r = viz.plot_pair(a, b, names=("x", "y"))
    assert r == pytest.approx(np.corrcoef(pair["x"], pair["y"])[0, 1])
    assert len(fig.axes[0].collections[0].get_offsets()) == 3  # the shared images only
    assert fig.axes[0].get_xlabel() == "JA: x" and fig.axes[0].get_ylabel() == "JA: y"
    matplotlib.pyplot.close(fig)


def test_pairs_only_on_the_same_images(tmp_path: Path):
    # other synthetic images with the same ids: a different data identity
    write_run(tmp_path, "001_cdnn", data_identity="synthetic:n32-seed0")
    write_run(tmp_path, "002_unet", data_identity="synthetic:n64-seed0")
    df = lb.collect_runs(tmp_path)
    assert df["data"].nunique() == 2
    assert lb.best_pair(df) is None
    write_run(tmp_path, "003_fcn", dataset="isic2017", data_identity="isic2017:test")
    write_run(tmp_path, "004_slsdeep", dataset="isic2017", data_identity="isic2017:test")
    df = lb.collect_runs(tmp_path)
    i, j, _ = lb.best_pair(df)
    assert df.iloc[[i, j]]["chapter"].tolist() == ["003_fcn", "004_slsdeep"]


def test_pairs_need_different_methods(tmp_path: Path):
    write_run(tmp_path / "one", "001_cdnn")
    write_run(tmp_path / "two", "001_cdnn")
    assert lb.best_pair(lb.collect_runs(tmp_path)) is None


def test_missing_per_image_csv_warns(runs: Path):
    (runs / "001_cdnn" / "smoke-synthetic" / "per_image_valid.csv").unlink()
    df = lb.collect_runs(runs)
    with pytest.warns(lb.RunWarning, match="per_image_valid.csv"):
        scores = lb.per_image_scores(df)
    assert len(scores) == 3


def test_per_image_csv_without_jaccard_warns(runs: Path):
    path = runs / "001_cdnn" / "smoke-synthetic" / "per_image_valid.csv"
    path.write_text("image_id,dice\na,0.5\n")
    df = lb.collect_runs(runs)
    with pytest.warns(lb.RunWarning, match="no 'jaccard' column"):
        assert lb.load_per_image(df.iloc[0]) is None


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
        assert "GFLOP/image train" in text and "assumed GPU" in text  # the cost table
    else:
        assert "No runs yet" in text
        assert "no run has recorded a cost estimate yet" in text


def test_headline_keeps_reported_evaluations(tmp_path: Path):
    # the paper reports no per-fold number
    write_run(
        tmp_path,
        "001_cdnn",
        results={"fold0": {"a": 0.5}, "test": {"b": 0.7}},
        reported={"fold0": {}},
    )
    # a paper without numbers: keep everything
    write_run(
        tmp_path,
        "004_fcn",
        results={"valid": {"a": 0.5}, "test": {"b": 0.7}},
        reported={"valid": {}, "test": {}},
    )
    df = lb.headline(lb.collect_runs(tmp_path))
    assert sorted(zip(df["chapter"], df["evaluation"], strict=True)) == [
        ("001_cdnn", "test"),
        ("004_fcn", "test"),
        ("004_fcn", "valid"),
    ]
    assert lb.headline(lb.collect_runs(tmp_path / "none")).empty


def test_cost_table_one_row_per_chapter_and_profile_with_the_latest_estimate(tmp_path: Path):
    estimate = cost_estimate()
    write_run(tmp_path, "001_cdnn", details={"cost_estimates": {"full": cost_estimate(epochs=1)}})
    write_run(
        tmp_path / "later",
        "001_cdnn",
        details={"cost_estimates": {"full": estimate, "colab": cost_estimate(epochs=3)}},
        finished="2024-02-01T00:00:00+0000",
    )
    write_run(tmp_path, "002_unet")  # no estimate: no row
    # a record from before the colab estimate: its single estimate is the full profile's
    write_run(tmp_path, "003_sls", details={"cost_estimate": cost_estimate(epochs=2)})
    table = lb.cost_table(lb.read_records(tmp_path))
    assert list(table.index) == [
        ("001_cdnn", "colab"),
        ("001_cdnn", "full"),
        ("003_sls", "full"),
    ]
    row = table.loc[("001_cdnn", "full")]
    large = estimate["stages"][1]  # the largest input, not the first stage's
    assert row["input"] == "16x12" and large["input"] == [16, 12]
    assert row["GFLOP/image train"] == round(large["gflop_train"], 2)
    assert row["parameters"] == f"{estimate['parameters']:,}"
    assert row["images trained"] == estimate["total"]["images_trained"] == 2 * 10 * 100
    assert row["GPU hours"] == round(estimate["total"]["gpu_hours"], 2)  # the later run's
    assert row["fits"] and row["assumed GPU"] == "NVIDIA A100 40GB at 30% of peak"
    assert pd.isna(row["measured hours"]) and row["measured on"] == ""
    assert table.loc[("001_cdnn", "colab"), "images trained"] == 2 * 3 * 100


def test_cost_table_puts_a_gpu_run_beside_its_profiles_estimate(tmp_path: Path):
    details = {"cost_estimates": {"full": cost_estimate(), "colab": cost_estimate(epochs=3)}}
    write_run(tmp_path, "001_cdnn", details=details)
    write_run(tmp_path, "001_cdnn", profile="full", dataset="isic2017", gpu=("A100", 7.5))
    write_run(tmp_path, "001_cdnn", profile="colab", dataset="isic2017", gpu=("Tesla T4", 5.0))
    table = lb.cost_table(lb.read_records(tmp_path))
    row = table.loc[("001_cdnn", "full")]
    assert row["measured peak memory GiB"] == 7.5 and row["measured on"] == "A100"
    assert row["measured hours"] == round(125.0 / 3600, 2)
    colab = table.loc[("001_cdnn", "colab")]
    assert colab["measured peak memory GiB"] == 5.0 and colab["measured on"] == "Tesla T4"


def test_cost_table_skips_what_is_not_an_estimate(tmp_path: Path):
    run = write_run(tmp_path, "001_cdnn", details={"cost_estimates": {"full": {"stages": []}}})
    with pytest.warns(lb.RunWarning, match="is not a cost estimate") as caught:
        table = lb.cost_table(lb.read_records(tmp_path))
    assert str(run / "metrics.json") in str(caught[0].message)
    assert table.empty and "GPU hours" in table.columns
    assert lb.cost_table([]).empty


def test_smoke_runs_stand_apart_from_real_data(runs: Path, tmp_path: Path):
    kinds = lb.by_kind(lb.collect_runs(runs))
    assert [heading.split(" (")[0] for heading, _ in kinds] == ["Runs on real data", "Smoke runs"]
    real, smoke = (rows for _, rows in kinds)
    assert set(real["profile"]) == {"full"} and set(smoke["profile"]) == {"smoke"}
    assert len(real) + len(smoke) == len(lb.collect_runs(runs))
    only_smoke = lb.by_kind(lb.collect_runs(write_run(tmp_path, "000_x").parent))
    assert len(only_smoke) == 1 and only_smoke[0][0].startswith("Smoke runs")


def test_run_table_shows_a_gpu_runs_measured_memory(tmp_path: Path):
    run = write_run(tmp_path, "002_unet", "full", "isic2018", gpu=("NVIDIA H100", 31.25))
    edit_record(run, lambda record: record.update(peak_rss_gb=7.46))
    made = lb.run_table(lb.collect_runs(tmp_path)).iloc[0]
    assert made["device"] == "NVIDIA H100" and made["GPU memory"] == "31.2 GiB"
    assert made["RAM"] == "7.5 GiB"
    assert made["data"] == "isic2018 (full)"


def test_interval_table_gives_the_pooled_score_its_interval_from_the_counts(tmp_path: Path):
    run = write_run(tmp_path, "001_cdnn", results={"test": {"a": 0.5, "b": 0.9, "c": 0.2}})
    counts = pd.DataFrame(
        {"tp": [1, 9, 2], "fp": [1, 1, 4], "tn": [90, 80, 88], "fn": [0, 0, 4]},
        index=pd.Index(["a", "b", "c"], name="image_id"),
    )
    path = run / "per_image_test.csv"
    pd.read_csv(path, index_col=0).join(counts).to_csv(path)
    row = lb.interval_table(lb.collect_runs(tmp_path)).iloc[0]
    assert row["pooled JA [95% CI]"] == format_ci(*pooled_bootstrap_ci(counts))
    assert row["pooled JA [95% CI]"].startswith(f"{12 / 22:.3f} [")  # 12 / (12 + 6 + 4)
    # a CSV without the counts (written before they were): the interval is left blank
    pd.read_csv(path, index_col=0).drop(columns=["tp", "fp", "tn", "fn"]).to_csv(path)
    assert lb.interval_table(lb.collect_runs(tmp_path)).iloc[0]["pooled JA [95% CI]"] == ""


def test_interval_table_gives_each_mean_its_bootstrap_interval(tmp_path: Path):
    scores = {f"ISIC_{i:07d}": v for i, v in enumerate([0.9, 0.8, 0.3, 0.75, 0.6, 0.95])}
    write_run(tmp_path, "001_cdnn", results={"test": scores})
    table = lb.interval_table(lb.collect_runs(tmp_path))
    row = table.iloc[0]
    assert row["images"] == 6 and row["method"] == "001_cdnn"
    assert row["JA [95% CI]"] == format_ci(*bootstrap_ci(list(scores.values())))
    assert row["JA [95% CI]"].startswith("0.717 [")  # the mean, then its interval
    assert {"thresholded JA [95% CI]", "Dice [95% CI]"} <= set(table.columns)


def test_paired_table_pairs_only_evaluations_of_the_same_images(tmp_path: Path):
    ids = [f"ISIC_{i:07d}" for i in range(8)]
    a = dict(zip(ids, [0.9, 0.8, 0.3, 0.75, 0.6, 0.95, 0.5, 0.7], strict=True))
    b = {k: min(1.0, v + 0.05) for k, v in a.items()}
    write_run(tmp_path, "001_cdnn", "full", "isic2017", results={"test": a}, data_identity="i:1")
    write_run(tmp_path, "003_sls", "full", "isic2017", results={"test": b}, data_identity="i:1")
    # the same ids but other data (another copy of the dataset): never paired
    write_run(tmp_path, "004_fcn", "full", "isic2017", results={"test": b}, data_identity="i:2")
    # the same data but other images (a subset): not the same evaluation
    subset = dict(list(b.items())[:5])
    write_run(
        tmp_path, "000_les", "full", "isic2017", results={"test": subset}, data_identity="i:1"
    )
    runs = lb.collect_runs(tmp_path)
    table = lb.paired_table(runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert {row["first"].split(" |")[0], row["second"].split(" |")[0]} == {"001_cdnn", "003_sls"}
    first = a if row["first"].startswith("001") else b
    second = b if first is a else a
    d = paired_difference(pd.Series(first), pd.Series(second))
    assert row["images"] == 8 and row["Wilcoxon p"] == round(d.p_value, 4)
    assert row["second - first [95% CI]"] == format_ci(d.mean, d.low, d.high, sign=True)


def test_the_classical_baseline_is_a_row_and_the_pair_that_matters(tmp_path: Path):
    """A run's baseline (beside_baseline: details.baseline and per_image_baseline_test.csv) is a
    row of its own, pairs with its chapter on the same images, and is the scatter's pair."""
    ids = [f"ISIC_{i:07d}" for i in range(8)]
    ours = dict(zip(ids, [0.9, 0.8, 0.3, 0.75, 0.6, 0.95, 0.5, 0.7], strict=True))
    other = {k: v - 0.05 for k, v in ours.items()}
    run = write_run(tmp_path, "001_cdnn", "full", "isic2017", results={"test": ours})
    write_run(tmp_path, "003_sls", "full", "isic2017", results={"test": other})
    floor = pd.DataFrame({"jaccard": {k: v - 0.1 for k, v in ours.items()}})
    floor.index.name = "image_id"
    floor.assign(dice=0.5, threshold_jaccard=0.0).to_csv(run / "per_image_baseline_test.csv")
    edit_record(run, lambda r: r["details"].update(baseline={"test": {"n_images": 8}}))
    runs = lb.collect_runs(tmp_path)
    base = runs[runs["method"].str.startswith("classical baseline")]
    assert list(base["method"]) == ["classical baseline (001_cdnn's input)"]
    assert base.iloc[0]["jaccard"] == pytest.approx(np.mean(list(ours.values())) - 0.1)
    assert base.iloc[0]["data"] == runs[runs["chapter"] == "003_sls"].iloc[0]["data"]
    a, b, n = lb.best_pair(runs)  # the chapter against its floor, not the two chapters
    assert runs.iloc[a]["method"].startswith("classical baseline")
    assert runs.iloc[b]["method"] == "001_cdnn" and n == 8
    pairs = lb.paired_table(runs)
    row = pairs[pairs["first"].str.startswith("001_cdnn") & pairs["second"].str.startswith("cl")]
    assert len(pairs) == 3 and row.iloc[0]["second - first [95% CI]"].startswith("-0.100 [")
