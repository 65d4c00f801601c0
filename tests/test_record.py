"""lessons_lib.record: the one metrics.json schema, and the "ours beside the paper" table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lessons_lib.record import (
    COMPARISON_COLUMNS,
    REPORTED_METRICS,
    SCHEMA_VERSION,
    RecordError,
    Result,
    RunRecord,
    comparison_rows,
    comparison_table,
)
from lessons_lib.reported import NOT_STATED, ORIGINAL, Reported


def paper(metric: str, value: float, averaging: str = "per_image", **fields) -> Reported:
    """One of a paper's numbers on the ISIC 2017 test set, at original size unless told."""
    values = dict(resolution=ORIGINAL, dataset="isic2017", split="test", source="Table 3")
    return Reported(metric, value, averaging, **(values | fields))


TEST = Result(
    name="test",
    evaluated_on="ISIC 2017 test set (600 images)",
    metrics={"jaccard": 0.75, "dice": 0.84, "accuracy": 0.93, "n_images": 600},
    reported=[paper("jaccard", 0.765), paper("accuracy", 0.934)],
    method=None,
    details={"members": ["fold0", "fold1"]},
)
VALID = Result("valid", "validation", {"jaccard": 0.7, "sensitivity": 0.8})


def make_record(**changes) -> RunRecord:
    values = dict(
        chapter="001_cdnn29",
        paper="Yuan & Lo 2017",
        dataset="isic2017",
        profile="full",
        params={"profile": "full", "dataset": "isic2017", "epochs": [2, 1], "lr": 1e-3},
        results=[TEST, VALID],
        data_identity="isic2017:abc123",
        n_parameters=5_042_589,
        weights_source="random initialisation (trained from scratch)",
        wall_time_s=3600.5,
        timings_s={"train": 3000.0, "evaluate": 600.5},
        environment={"device": "cuda", "gpu": "A100", "torch": "2.4.0"},
        finished="2024-01-01T00:00:00+0000",
        gpu_peak_memory_gb=10.5,
        details={"flops_per_image": 1.5e9},
    )
    return RunRecord(**(values | changes))


# ----------------------------------------------------------------------------- round trip
def test_written_record_reads_back_equal(tmp_path: Path) -> None:
    record = make_record()
    path = record.write(tmp_path / "run" / "metrics.json")
    assert path == tmp_path / "run" / "metrics.json"
    data = json.loads(path.read_text())  # plain JSON on disk
    assert data["schema"] == SCHEMA_VERSION == record.schema
    assert data["results"][0]["reported"][0] == {
        "metric": "jaccard",
        "value": 0.765,
        "averaging": "per_image",
        "resolution": "original",
        "dataset": "isic2017",
        "split": "test",
        "source": "Table 3",
        "variant": None,
        "note": "",
    }
    back = RunRecord.read(path)
    assert back == record
    assert isinstance(back.results[0], Result) and back.results[0].details == TEST.details
    assert back.results[0].reported == TEST.reported  # read back as Reported, not dicts
    assert back.results[1].reported == [] and back.results[1].method is None
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file


def test_defaults_and_nulls_round_trip(tmp_path: Path) -> None:
    record = make_record(n_parameters=None, weights_source=None, results=[], details={})
    record.gpu_peak_memory_gb = None  # a CPU run
    assert RunRecord.read(record.write(tmp_path / "metrics.json")) == record


def test_from_dict_accepts_a_record_without_optional_fields() -> None:
    data = make_record().to_dict()
    for optional in ("gpu_peak_memory_gb", "details"):
        del data[optional]
    for optional in ("reported", "method", "details"):
        del data["results"][1][optional]
    record = RunRecord.from_dict(data)
    assert record.gpu_peak_memory_gb is None and record.details == {}
    assert record.results[1] == Result("valid", "validation", VALID.metrics)


# ----------------------------------------------------------------------------- refusals
def write_json(tmp_path: Path, data) -> Path:
    path = tmp_path / "runs" / "001_cdnn29" / "full-isic2017" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def edited(edit) -> dict:
    data = make_record().to_dict()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (
            edited(lambda d: d.pop("schema")),
            f"schema version None, this library reads version {SCHEMA_VERSION}",
        ),
        (
            edited(lambda d: d.update(schema=SCHEMA_VERSION + 1)),
            f"schema version {SCHEMA_VERSION + 1}",
        ),
        (edited(lambda d: d.update(schema="1")), "schema version '1'"),
        (edited(lambda d: d.pop("data_identity")), "missing field(s) data_identity"),
        (
            edited(lambda d: [d.pop("paper"), d.pop("finished")]),
            "missing field(s) finished, paper",
        ),
        (edited(lambda d: d.update(method="CDNN-29")), "unknown field(s) method"),
        (
            edited(lambda d: [d.pop("paper"), d.update(extra=1)]),
            "missing field(s) paper; unknown field(s) extra",
        ),
        (edited(lambda d: d.update(results={"test": {}})), "'results' is not a list"),
        (edited(lambda d: d["results"][1].pop("metrics")), "result 1 has no 'metrics' mapping"),
        (edited(lambda d: d["results"][0].update(metrics=0.7)), "result 0 has no 'metrics'"),
        (
            edited(lambda d: d["results"][0].pop("evaluated_on")),
            "result 0 needs name, evaluated_on and metrics",
        ),
        (edited(lambda d: d["results"][0].update(score=1)), "unknown field(s) score"),
        (
            edited(lambda d: d["results"][0].update(reported={"jaccard": 0.765})),
            "result 0: 'reported' is not a list of objects",
        ),
        (
            edited(lambda d: d["results"][0]["reported"][0].update(averaging="mean")),
            "result 0: a reported number: unknown averaging 'mean'",
        ),
        (
            edited(lambda d: d["results"][0]["reported"][0].pop("dataset")),
            "result 0: a reported number:",
        ),
    ],
    ids=[
        "not-json",
        "empty",
        "not-object",
        "old-schema",
        "newer-schema",
        "schema-string",
        "missing-field",
        "missing-fields",
        "unknown-field",
        "missing-and-unknown",
        "results-not-list",
        "result-without-metrics",
        "metrics-not-mapping",
        "result-without-split",
        "result-unknown-field",
        "reported-schema-2",
        "reported-unknown-averaging",
        "reported-missing-field",
    ],
)
def test_read_refuses_what_is_not_the_schema_naming_the_file(
    tmp_path: Path, data, why: str
) -> None:
    path = write_json(tmp_path, data)
    with pytest.raises(RecordError) as err:
        RunRecord.read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert why in message, message
    assert isinstance(err.value, ValueError)


def test_read_of_a_missing_file_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="unreadable"):
        RunRecord.read(tmp_path / "metrics.json")


def test_old_schema_says_to_rerun(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"chapter": "001_cdnn29", "results": []})
    with pytest.raises(RecordError, match="re-run the chapter"):
        RunRecord.read(path)


# ----------------------------------------------------------------------------- comparison
POOLED = Result(
    "test",
    "ISIC 2017 test set (600 images)",
    {"jaccard": 0.70, "pooled_jaccard": 0.80, "dice": 0.80, "pooled_dice": 0.88},
    [
        paper("jaccard", 0.782, "pooled", resolution=NOT_STATED, source="Table 1"),
        paper("dice", 0.878, "pooled", resolution=NOT_STATED, source="Table 1"),
    ],
)


def test_comparison_rows_has_differences_and_blanks() -> None:
    rows = comparison_rows([TEST, VALID])
    assert list(rows.columns) == COMPARISON_COLUMNS
    assert len(rows) == 2  # one row per reported number; VALID reports none
    by = rows.set_index(["evaluation", "metric"])
    assert by.loc[("test", "jaccard"), "ours"] == 0.75
    assert by.loc[("test", "jaccard"), "paper"] == 0.765
    assert by.loc[("test", "jaccard"), "ours - paper"] == pytest.approx(-0.015)
    assert by.loc[("test", "accuracy"), "ours - paper"] == pytest.approx(0.93 - 0.934)
    assert by.loc[("test", "jaccard"), "evaluated on"] == "ISIC 2017 test set (600 images)"
    assert by.loc[("test", "jaccard"), "paper computed as"] == "per image, at original size"
    assert by.loc[("test", "jaccard"), "source"] == "Table 3"
    assert comparison_rows([VALID]).empty and comparison_rows([]).empty


def test_a_per_image_mean_is_never_subtracted_from_a_pooled_number() -> None:
    """The paper's pooled JA and Dice sit beside our pooled ones, not our per-image means."""
    rows = comparison_rows([POOLED]).set_index("metric")
    assert list(rows.index) == ["pooled_jaccard", "pooled_dice"]
    assert rows.loc["pooled_jaccard", "ours"] == 0.80  # not the per-image 0.70
    assert rows.loc["pooled_jaccard", "ours - paper"] == pytest.approx(0.80 - 0.782)
    assert rows.loc["pooled_dice", "ours - paper"] == pytest.approx(0.88 - 0.878)
    assert rows.loc["pooled_jaccard", "paper computed as"] == "pooled, resolution not stated"
    # a result without our pooled score gets no difference at all (not the per-image one)
    per_image_only = Result("test", "s", {"jaccard": 0.70}, POOLED.reported[:1])
    row = comparison_rows([per_image_only]).iloc[0]
    assert row["metric"] == "pooled_jaccard" and math.isnan(row["ours"])
    assert math.isnan(row["ours - paper"])


@pytest.mark.parametrize(
    ("reported", "why"),
    [
        (paper("jaccard", 0.86, "per_batch", resolution="1024x1024"), "per batch"),
        (paper("jaccard", 0.86, "per_image", resolution="384x384"), "another size"),
        (paper("threshold_jaccard", 0.71, "pooled"), "no pooled form"),
    ],
)
def test_a_number_computed_unlike_any_of_ours_stands_alone(reported: Reported, why: str) -> None:
    ours = {"jaccard": 0.8, "threshold_jaccard": 0.7, "pooled_jaccard": 0.85}
    row = comparison_rows([Result("x", "s", ours, [reported])]).iloc[0]
    assert row["metric"] == f"{reported.metric} ({reported.computed_as})", why
    assert math.isnan(row["ours"]) and math.isnan(row["ours - paper"]), why
    assert row["paper"] == reported.value


def test_comparison_table_puts_ours_beside_the_paper() -> None:
    table = comparison_table([TEST, VALID])
    assert list(table.index) == list(REPORTED_METRICS)
    assert list(table.columns) == [
        ("test", "ours"),
        ("test", "paper"),
        ("valid", "ours"),
        ("valid", "paper"),
    ]
    assert table.columns.names == ["evaluation", ""]
    assert table.loc["jaccard", ("test", "ours")] == 0.75
    assert table.loc["jaccard", ("test", "paper")] == 0.765
    assert table.loc["accuracy", ("test", "ours")] == 0.93
    assert table.loc["accuracy", ("test", "paper")] == 0.934
    assert table.loc["dice", ("test", "ours")] == 0.84
    # blanks where a number is missing: the paper reports no Dice, we have no pooled JA
    assert table.loc["dice", ("test", "paper")] == ""
    assert table.loc["pooled_jaccard", ("test", "ours")] == ""
    assert table.loc["sensitivity", ("valid", "ours")] == 0.8
    assert (table[("valid", "paper")] == "").all()
    # one line per metric, evaluations in the order given
    assert list(comparison_table([VALID, TEST]).columns.get_level_values(0)) == [
        "valid",
        "valid",
        "test",
        "test",
    ]


def test_comparison_table_puts_a_pooled_number_in_the_pooled_row() -> None:
    table = comparison_table([POOLED])
    assert table.loc["pooled_jaccard", ("test", "paper")] == 0.782
    assert table.loc["jaccard", ("test", "paper")] == ""  # never beside our per-image mean
    assert table.loc["pooled_dice", ("test", "ours")] == 0.88  # a row added for the paper's
    assert table.loc["pooled_dice", ("test", "paper")] == 0.878
    batch = Result("x", "s", {"jaccard": 0.8}, [paper("jaccard", 0.86, "per_batch")])
    alone = comparison_table([batch])
    label = "jaccard (per batch, at original size)"
    assert alone.loc[label, ("x", "paper")] == 0.86
    assert alone.loc[label, ("x", "ours")] == ""


def test_comparison_table_rounds() -> None:
    precise = Result("x", "s", {"jaccard": 0.123456}, [paper("jaccard", 0.98765)])
    table = comparison_table([precise], ["jaccard"], digits=2)
    assert table.loc["jaccard", ("x", "ours")] == 0.12
    assert table.loc["jaccard", ("x", "paper")] == 0.99
    default = comparison_table([precise])  # three digits
    assert default.loc["jaccard", ("x", "ours")] == 0.123
    assert default.loc["jaccard", ("x", "paper")] == 0.988
