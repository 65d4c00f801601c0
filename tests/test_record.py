"""lessons_lib.record: the one metrics.json schema, and the "ours beside the paper" table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lessons_lib.record import (
    REPORTED_METRICS,
    SCHEMA_VERSION,
    RecordError,
    Result,
    RunRecord,
    comparison_rows,
    comparison_table,
)

TEST = Result(
    name="test",
    evaluated_on="ISIC 2017 test set (600 images)",
    metrics={"jaccard": 0.75, "dice": 0.84, "accuracy": 0.93, "n_images": 600},
    reported={"jaccard": 0.765, "accuracy": 0.934},
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
    assert data["results"][0]["reported"] == {"jaccard": 0.765, "accuracy": 0.934}
    back = RunRecord.read(path)
    assert back == record
    assert isinstance(back.results[0], Result) and back.results[0].details == TEST.details
    assert back.results[1].reported == {} and back.results[1].method is None
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
def test_comparison_rows_has_differences_and_blanks() -> None:
    rows = comparison_rows([TEST, VALID])
    assert list(rows.columns) == [
        "evaluation",
        "evaluated on",
        "metric",
        "ours",
        "paper",
        "ours - paper",
    ]
    assert len(rows) == 2 * len(REPORTED_METRICS)
    assert list(rows["metric"][: len(REPORTED_METRICS)]) == list(REPORTED_METRICS)
    by = rows.set_index(["evaluation", "metric"])
    assert by.loc[("test", "jaccard"), "ours"] == 0.75
    assert by.loc[("test", "jaccard"), "paper"] == 0.765
    assert by.loc[("test", "jaccard"), "ours - paper"] == pytest.approx(-0.015)
    assert by.loc[("test", "accuracy"), "ours - paper"] == pytest.approx(0.93 - 0.934)
    assert by.loc[("test", "jaccard"), "evaluated on"] == "ISIC 2017 test set (600 images)"
    # the paper reports no Dice: no paper value and no difference
    assert by.loc[("test", "dice"), "ours"] == 0.84
    assert math.isnan(by.loc[("test", "dice"), "paper"])
    assert math.isnan(by.loc[("test", "dice"), "ours - paper"])
    # we have no pooled JA: NaN too
    assert math.isnan(by.loc[("test", "pooled_jaccard"), "ours"])
    assert by.loc[("valid", "sensitivity"), "ours"] == 0.8
    assert rows[rows["evaluation"] == "valid"]["paper"].isna().all()


def test_comparison_rows_of_chosen_metrics() -> None:
    rows = comparison_rows([TEST], ["accuracy", "jaccard"])
    assert list(rows["metric"]) == ["accuracy", "jaccard"]
    assert list(rows["ours - paper"]) == pytest.approx([0.93 - 0.934, 0.75 - 0.765])
    assert comparison_rows([]).empty


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


def test_comparison_table_rounds() -> None:
    precise = Result("x", "s", {"jaccard": 0.123456}, {"jaccard": 0.98765})
    table = comparison_table([precise], ["jaccard"], digits=2)
    assert table.loc["jaccard", ("x", "ours")] == 0.12
    assert table.loc["jaccard", ("x", "paper")] == 0.99
    default = comparison_table([precise])  # three digits
    assert default.loc["jaccard", ("x", "ours")] == 0.123
    assert default.loc["jaccard", ("x", "paper")] == 0.988
