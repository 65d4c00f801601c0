"""Every chapter notebook: its opening, its imports, and papermill runs at its defaults and with
parameters.

The default runs are the session fixture ``chapter_runs`` (tests/conftest.py), executed once and
also rendered by the book test; nbval executes each notebook a second time (``make test``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import CHAPTERS, NOTEBOOKS

from lessons_lib.recipes import CHAPTERS as PAPER_CHAPTERS
from lessons_lib.recipes import OTHER_CHAPTERS, get_recipe

WITH_RECIPE = [nb for nb in NOTEBOOKS if nb.stem in {**PAPER_CHAPTERS, **OTHER_CHAPTERS}]

OPENING = ("parameters", "profile", "seed", "out_dir")


def _params_cell(nb) -> str:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0].source


def test_every_chapter_has_a_recipe() -> None:
    assert sorted(nb.stem for nb in WITH_RECIPE) == sorted(nb.stem for nb in CHAPTERS)
    assert sorted(PAPER_CHAPTERS) == sorted(nb.stem for nb in CHAPTERS if nb.stem[:3].isdigit())


@pytest.mark.parametrize("path", WITH_RECIPE, ids=lambda p: p.stem)
def test_parameters_cell_lists_exactly_the_recipes_parameters(path: Path) -> None:
    """papermill needs the cell; the recipe holds the values: same names, same order, None."""
    tree = ast.parse(_params_cell(nbformat.read(path, as_version=4)))
    assigned = [(n.targets[0].id, ast.literal_eval(n.value)) for n in tree.body]
    recipe = get_recipe(path.stem)
    assert [name for name, _ in assigned] == ["profile", *(p.name for p in recipe.params)]
    assert assigned[0][1] == "smoke"
    assert [value for _, value in assigned[1:]] == [None] * len(recipe.params)


@pytest.mark.parametrize("path", WITH_RECIPE, ids=lambda p: p.stem)
def test_papermill_help_lists_every_parameter_with_its_meaning(path: Path) -> None:
    """``papermill --help-notebook`` (which stops a comment at any '=') shows each meaning."""
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split()[0].rstrip(":") for line in out.splitlines() if line.startswith("  ")}
    for param in get_recipe(path.stem).params:
        assert param.name in lines, f"{param.name} missing from --help-notebook"
        assert param.meaning in " ".join(out.split()), f"{param.name}'s meaning is cut"


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_import_cells_import(path: Path) -> None:
    """Every ``import``/``from`` line of a notebook runs: a broken import fails in seconds."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(re.sub(r"^\s*[%!].*$", "", cell.source, flags=re.M))
        imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        if imports:
            exec(compile(ast.Module(body=imports, type_ignores=[]), path.name, "exec"), {})


@pytest.mark.parametrize("path", WITH_RECIPE, ids=lambda p: p.stem)
def test_chapter_id_is_the_file_stem(path: Path) -> None:
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert re.findall(r'get_recipe\("([^"]+)"\)', text) == [path.stem]
    assert get_recipe(path.stem).chapter == path.stem


@pytest.mark.notebooks
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_under_papermill(path: Path, chapter_runs: dict[str, Path]) -> None:
    assert (chapter_runs["executed"] / path.name).is_file()
    runs = [p.parent for p in chapter_runs["runs"].glob(f"{path.stem}/*/metrics.json")]
    assert len(runs) == 1, f"expected one run of {path.stem}, found {runs}"
    out = runs[0]
    record = json.loads((out / "metrics.json").read_text())
    assert record["chapter"] == path.stem
    assert record["profile"] == "smoke" and record["params"]["seed"] == 0
    kind, settings = record["data_identity"].split(":", 1)
    assert kind == "synthetic"
    # generated in the session's cache (conftest): the user's ~/.cache/lessons_lib stays as it was
    cache = Path(os.environ["LESSONS_CACHE"]).resolve()
    assert cache.is_relative_to(Path(os.environ["LESSONS_TEST_SHARED"]).resolve())
    assert (cache / "synthetic" / settings / "synth.json").is_file()
    assert record["results"], "the run recorded no evaluation"
    for result in record["results"]:
        metrics = result["metrics"]
        assert metrics["n_images"] > 0
        for key in ("jaccard", "threshold_jaccard", "dice", "accuracy", "sensitivity"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert (out / f"per_image_{result['name']}.csv").is_file()
    assert {"environment", "wall_time_s", "timings_s"} <= set(record)
    assert 0.2 < record["peak_rss_gb"] < 8, "the kernel's peak RAM, in GiB"
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_marked_cells_keep_a_reference_and_no_other_cell_does(path: Path) -> None:
    """nbval compares a ``# NBVAL_CHECK_OUTPUT`` cell only with a committed output and count."""
    from lessons_lib.book.references import problems

    assert problems(path) == []


@pytest.mark.notebooks
def test_nbval_fails_when_a_marked_output_changes(tmp_path: Path) -> None:
    """A reference cell whose committed output differs from what the code prints fails nbval."""
    source = next(nb for nb in NOTEBOOKS if nb.stem == "data_and_metrics")
    nb = nbformat.read(source, as_version=4)
    index, cell = next(
        (i, c) for i, c in enumerate(nb.cells) if "JACCARD_THRESHOLD =" in c.source and c.outputs
    )
    assert "0.65" in cell.outputs[0]["text"]
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("0.65", "0.66")
    nb.cells = nb.cells[: index + 1]  # nothing after it needs to run
    copy = source.parent / f"_tampered_{tmp_path.name}.ipynb"  # beside it: the same cwd
    nbformat.write(nb, copy)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax"]
            + [str(copy)],
            capture_output=True,
            text=True,
            cwd=source.parent,
            env={**os.environ, "LESSONS_RUNS": str(tmp_path / "runs")},
        )
    finally:
        copy.unlink()
    assert out.returncode == 1 and "Cell outputs differ" in out.stdout


def test_the_determinism_check_sees_one_bit_of_difference(tmp_path: Path) -> None:
    """``run_differences`` (the session's comparison of papermill's and nbval's runs): equal runs
    give nothing; one per-image score off by the last bit, one metric, or a CSV only one run
    wrote are each named."""
    import numpy as np
    import pandas as pd
    from helpers import run_differences

    def write(run: Path, score: float, dice: float) -> None:
        (run / "fold0").mkdir(parents=True)
        result = {"name": "test", "metrics": {"jaccard": score, "dice": dice}}
        (run / "metrics.json").write_text(json.dumps({"results": [result]}))
        pd.DataFrame({"jaccard": [0.5, score]}, index=["a", "b"]).to_csv(run / "per_image_test.csv")
        pd.DataFrame({"epoch": [0], "valid_loss": [0.25]}).to_csv(run / "fold0" / "history.csv")

    write(tmp_path / "a", 0.7, 0.8)
    write(tmp_path / "b", 0.7, 0.8)
    assert run_differences(tmp_path / "a", tmp_path / "b") == []
    write(tmp_path / "c", float(np.nextafter(0.7, 1.0)), 0.8)
    assert run_differences(tmp_path / "a", tmp_path / "c") == [
        "metrics.json, evaluation 'test': jaccard differ",
        "per_image_test.csv: values differ",
    ]
    (tmp_path / "c" / "per_image_valid.csv").write_text("image_id,jaccard\n")
    assert "per_image_valid.csv: in one run only" in run_differences(tmp_path / "a", tmp_path / "c")


def test_the_session_writes_its_temporary_files_where_scratch_folder_says(
    tmp_path: Path, monkeypatch
) -> None:
    """The notebook runs' checkpoints go to the scratch folder (the RAM disk where it has room),
    and ``LESSONS_TEST_TMP`` chooses another (empty: the system's default)."""
    from conftest import RAM_DISK, scratch_folder

    shared = Path(os.environ["LESSONS_TEST_SHARED"]).resolve()
    assert tmp_path.resolve().is_relative_to(shared)  # removed with it when the session passes
    chosen = scratch_folder()
    if chosen is not None:
        assert tmp_path.resolve().is_relative_to(chosen.resolve())
        assert Path(os.environ["LESSONS_TEST_SHARED"]).resolve().is_relative_to(chosen.resolve())
    monkeypatch.setenv("LESSONS_TEST_TMP", str(tmp_path))
    assert scratch_folder() == tmp_path
    monkeypatch.setenv("LESSONS_TEST_TMP", "")
    assert scratch_folder() is None
    monkeypatch.delenv("LESSONS_TEST_TMP")
    assert scratch_folder() in (None, RAM_DISK)
