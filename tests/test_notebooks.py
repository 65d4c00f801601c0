"""Every chapter notebook runs under papermill, at its defaults and with parameters.

(nbval runs them too: ``pytest --nbval-lax notebooks/``, part of ``make test``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHAPTERS = [nb for nb in NOTEBOOKS if nb.stem != "leaderboard"]
OPENING = ("parameters", "profile", "seed", "out_dir")


def _papermill(path: Path, output: Path, parameters: dict) -> None:
    """Execute a notebook as a user would: papermill, from the notebooks folder."""
    import papermill

    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters,
        cwd=str(path.parent),
        progress_bar=False,
        kernel_name="python3",
    )


def _params_cell(nb) -> str:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0].source


def test_there_are_notebooks() -> None:
    assert any(nb.name.startswith("002_") for nb in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_follows_the_chapter_contract(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[1].cell_type == "code", "the parameters cell comes right after the title"
    source = _params_cell(nb)
    for name in ("seed", "out_dir") if path in CHAPTERS else ():
        assert f"\n{name} = " in f"\n{source}", f"parameter {name!r} missing"
    text = "\n".join(c.source for c in nb.cells)
    if path in CHAPTERS:
        assert "chapter.setup(" in text and ".finish(" in text
    if path.name[:3].isdigit():
        assert "## Deviations from the paper" in text


@pytest.mark.notebooks
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_under_papermill(path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LESSONS_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "out"
    _papermill(path, tmp_path / path.name, {"out_dir": str(out)})
    record = json.loads((out / "metrics.json").read_text())
    assert record["profile"] == "smoke" and record["params"]["seed"] == 0
    assert record["results"], "the run recorded no evaluation"
    for result in record["results"]:
        metrics = result["metrics"]
        assert metrics["n_images"] > 0
        for key in ("jaccard", "threshold_jaccard", "dice", "accuracy", "sensitivity"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert (out / f"per_image_{result['name']}.csv").is_file()
    assert {"environment", "wall_time_s", "timings_s"} <= set(record)
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"


@pytest.mark.notebooks
def test_papermill_parameters_override_the_profile(tmp_path: Path) -> None:
    path = next(nb for nb in CHAPTERS if nb.name.startswith("002_"))
    params = {
        "out_dir": str(tmp_path / "out"),
        "sizes": [32, 64],
        "epochs_frozen": [0, 0],
        "epochs": [1, 1],
        "lr_find_iters": 5,
        "seed": 3,
    }
    _papermill(path, tmp_path / "o.ipynb", params)
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert record["params"]["sizes"] == [32, 64] and record["params"]["seed"] == 3
    assert record["params"]["batch_size"] == [8, 8]  # still the smoke profile's value
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["32px", "64px"]


@pytest.mark.notebooks
@pytest.mark.realdata
def test_chapter_002_on_real_dermoscopy_images(
    shared_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """The smoke-sized chapter on the real HAM10000 sample (a user's own ``folder`` layout)."""
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "cache"))
    path = next(nb for nb in CHAPTERS if nb.name.startswith("002_"))
    params = {
        "out_dir": str(tmp_path / "out"),
        "dataset": "folder",
        "n_valid": 6,
        "data_dir": str(shared_data / "ham10000-sample"),
    }
    _papermill(path, tmp_path / "o.ipynb", params)
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    by_name = {r["name"]: r["metrics"] for r in record["results"]}
    assert by_name["random_split"]["n_images"] == 6
    assert by_name["official_valid"]["n_images"] == 4  # the seeded 10% split of 41 images
    saved = sorted((tmp_path / "out" / "predictions" / "official_valid").iterdir())
    from PIL import Image

    assert Image.open(saved[0]).size == (600, 450)  # back at the original size
