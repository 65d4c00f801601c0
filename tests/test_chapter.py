"""The chapter contract's checks: parameters as a user passes them (papermill ``-p``/``-y``, the
notebooks' own opening cells), ``pretrained``, and reruns into an existing run folder.

Each test makes the mistake as a user would and checks the message (it names the parameter or
folder, what is expected and the value given) and that nothing half-done is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from conftest import CHAPTERS

from lessons_lib import chapter
from lessons_lib.chapter import ParameterError, Run, RunFolderError
from lessons_lib.errors import DataError
from lessons_lib.models import pretrained as pretrained_module
from lessons_lib.params import Param, resolve
from lessons_lib.recipes import get_recipe

NOTEBOOKS = {path.stem: path for path in CHAPTERS}
CHAPTER = "002_resnet34_unet"


def resolve_params(stem: str, profile: str, given: dict):
    """A chapter's parameters as its first cell resolves them (``R.resolve``)."""
    return get_recipe(stem).resolve(profile, given)


def prepare(stem: str, tmp_path: Path, parameters: dict | None = None, cli: list | None = None):
    """The notebook with papermill's injected parameters, as papermill would run it (``cli``:
    through the ``papermill`` command line, as the README shows; else the Python API)."""
    out = tmp_path / f"{stem}-prepared.ipynb"
    if cli is not None:
        command = [sys.executable, "-m", "papermill", str(NOTEBOOKS[stem]), str(out)]
        subprocess.run([*command, *cli, "--prepare-only"], check=True, capture_output=True)
    else:
        import papermill as pm

        pm.execute_notebook(
            str(NOTEBOOKS[stem]),
            str(out),
            parameters=parameters or {},
            prepare_only=True,
            progress_bar=False,
            kernel_name="python3",
        )
    return nbformat.read(out, as_version=4)


def run_opening(nb) -> dict:
    """Execute a chapter's code cells up to and including the one making its ``chapter.Run``:
    the parameters, imports, ``R.resolve``, ``setup`` and ``Run``."""
    namespace: dict = {"In": [""]}  # IPython keeps each executed cell's source in ``In``
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        namespace["In"].append(cell.source)
        exec(compile(cell.source, "<cell>", "exec"), namespace)
        if "chapter.Run(" in cell.source:
            return namespace
    raise AssertionError("the notebook makes no chapter.Run")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch) -> Path:
    """An empty ``$LESSONS_RUNS`` (and cache), so that every folder a run makes is seen."""
    monkeypatch.setenv("LESSONS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "runs"


def made(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


# --- parameters as papermill passes them ---------------------------------------------------


@pytest.mark.parametrize(
    "cli",
    [["-p", "epochs", "[2, 1]"], ["-y", "epochs: [2, 1]"], ["-p", "epochs", "(2, 1)"]],
    ids=["-p text", "-y yaml", "-p tuple text"],
)
def test_the_readme_override_reaches_the_chapter_parsed(cli, tmp_path: Path, runs: Path) -> None:
    namespace = run_opening(prepare(CHAPTER, tmp_path, cli=cli))
    assert namespace["P"].epochs == (2, 1)
    assert namespace["P"].epochs_frozen == (1, 0)  # the smoke profile's, untouched
    params = json.loads((runs / CHAPTER / "smoke-synthetic" / "params.json").read_text())
    assert params["epochs"] == [2, 1]


def test_one_stage_through_yaml_with_exponent_learning_rates(tmp_path: Path, runs: Path) -> None:
    """PyYAML (papermill's -y) reads ``1e-4`` as the text "1e-4": it is parsed as a number."""
    stages = (
        "{sizes: [96], epochs_frozen: [1], epochs: [2], batch_size: [4], lrs: [[1e-4, 1e-3, 1e-2]]}"
    )
    P = run_opening(prepare(CHAPTER, tmp_path, cli=["-y", stages]))["P"]
    assert (P.sizes, P.epochs, P.lrs) == ((96,), (2,), ((1e-4, 1e-3, 1e-2),))


def test_readme_example_as_the_string_papermill_passes() -> None:
    p = resolve_params(CHAPTER, "smoke", {"epochs": "[2, 1]", "seed": 1})
    assert p.epochs == (2, 1) and p.sizes == (32, 64) and p.seed == 1


@pytest.mark.parametrize(
    "stem, given, words",
    [
        ("000_lesionseg", {"epochs": -1}, ["parameter epochs", "an int >= 1", "got -1"]),
        ("001_cdnn29", {"n_folds": 1}, ["parameter n_folds", "an int >= 2", "got 1"]),
        ("001_cdnn29", {"size": "[64]"}, ["parameter size", "a list of 2 ints", "got '[64]'"]),
        (CHAPTER, {"epochs": 3}, ["parameter epochs", "one value per stage", "got 3"]),
        (CHAPTER, {"batch_size": "[8, 0]"}, ["parameter batch_size", ">= 1", "got '[8, 0]'"]),
        ("003_slsdeep", {"lr_decoder": 0}, ["parameter lr_decoder", "a number > 0", "got 0"]),
        ("004_vgg16_fcn", {"momentum": 1.5}, ["parameter momentum", "in [0, 1)", "got 1.5"]),
        ("data_and_metrics", {"work_size": 0}, ["parameter work_size", ">= 1", "got 0"]),
        ("data_and_metrics", {"dataset": "isic2019"}, ["parameter dataset", "got 'isic2019'"]),
        ("000_lesionseg", {"size": 63}, ["parameter size", "a multiple of 8", "got 63"]),
        ("000_lesionseg", {"opening": "bogus"}, ["parameter opening", "'cross'", "got 'bogus'"]),
        (CHAPTER, {"epoch": 1}, ["parameter epoch", "did you mean epochs?"]),
        ("003_slsdeep", {"batch_size": 1}, ["parameter batch_size", "an int >= 2", "got 1"]),
        (CHAPTER, {"lr_find_iters": 5}, ["parameter lr_find_iters", "at least 10", "got 5"]),
    ],
)
def test_a_wrong_parameter_stops_the_first_cell_and_makes_no_run_folder(
    stem: str, given: dict, words: list, tmp_path: Path, runs: Path
) -> None:
    nb = prepare(stem, tmp_path, given)
    with pytest.raises(ParameterError) as err:
        run_opening(nb)
    for word in words:
        assert word in str(err.value)
    assert made(runs) == [] and made(tmp_path / "cache") == []


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_every_chapter_resolves_both_profiles(stem: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pretrained_module, "download_problem", lambda url, timeout=5.0: None)
    recipe = get_recipe(stem)
    smoke = recipe.resolve("smoke", {})
    assert vars(smoke) == vars(recipe.profile("smoke"))
    full = recipe.resolve("full", {"data_dir": str(tmp_path)})
    assert full.profile == "full" and full.data_dir == str(tmp_path)
    # every profile value given back explicitly (as -y would) is accepted unchanged
    given = {**vars(recipe.profile("full")), "data_dir": str(tmp_path)}
    assert vars(recipe.resolve("full", given)) == vars(full)


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"epochs": [2, 1]}, {"epochs": (2, 1)}),  # a list for a tuple (papermill's -y, API)
        (
            {"lrs": "[[1e-3, 1e-3, 1e-2], [1e-4, 1e-4, 1e-3]]"},
            {"lrs": ((1e-3,) * 2 + (1e-2,), (1e-4,) * 2 + (1e-3,))},
        ),
        ({"epochs_frozen": "[0, 0]"}, {"epochs_frozen": (0, 0)}),  # 0: the profile has a 0
        ({"n_valid": "4", "pretrained": "False"}, {"n_valid": 4, "pretrained": False}),
        ({"prepare_workers": None, "n_synth": None}, {"prepare_workers": 1, "n_synth": 32}),
    ],
)
def test_text_and_lists_are_converted_to_the_profile_types(given: dict, expected: dict) -> None:
    p = resolve_params(CHAPTER, "smoke", given)
    assert {k: getattr(p, k) for k in expected} == expected


@pytest.mark.parametrize(
    "stem, given",
    [
        ("000_lesionseg", {"size": 32, "epochs": 1, "upsample": "bilinear", "opening": "none"}),
        ("003_slsdeep", {"size": 32, "epochs": 1, "speed_iters": 1, "speed_warmup": 0}),
        ("003_slsdeep", {"epe_weight": 0, "skips": "all"}),
        ("004_vgg16_fcn", {"size": 32, "epochs": 1, "n_train": 6, "batch_size": 6}),
        (CHAPTER, {"sizes": [32, 64], "epochs_frozen": [0, 0], "epochs": [1, 1]}),
    ],
)
def test_the_ablation_runs_parameters_are_accepted(stem: str, given: dict) -> None:
    """The parameters the chapters' papermill tests and ablations pass (0 where 0 is meant)."""
    p = resolve_params(stem, "smoke", given)
    assert {k: getattr(p, k) for k in given} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in given.items()
    }


def test_a_different_number_of_stages_is_fine_when_every_stage_parameter_agrees() -> None:
    one_stage = {
        "sizes": "[96]",
        "epochs_frozen": "[1]",
        "epochs": "[2]",
        "batch_size": "[4]",
        "lrs": "[[1e-5, 1e-4, 1e-3]]",
    }
    p = resolve_params(CHAPTER, "smoke", one_stage)
    assert (p.sizes, p.epochs, p.lrs) == ((96,), (2,), ((1e-5, 1e-4, 1e-3),))
    with pytest.raises(ParameterError, match="one value per stage each") as err:
        resolve_params(CHAPTER, "smoke", {"sizes": "[96]"})
    assert "sizes 1, epochs_frozen 2, epochs 2, batch_size 2, lrs 2" in str(err.value)


def test_every_wrong_parameter_is_listed_at_once() -> None:
    given = {"batch_size": [0, 4], "sizes": [-1, 64], "seed": -1, "lrs": "[[1e-3, 1e-2]] * 2"}
    with pytest.raises(ParameterError) as err:
        resolve_params(CHAPTER, "smoke", given)
    assert set(err.value.problems) == {"batch_size", "sizes", "seed", "lrs"}
    text = str(err.value)
    assert text.startswith("4 wrong parameters:")
    assert "batch_size[0] is out of range" in text and "sizes[0] is out of range" in text
    assert "parameter seed (" in text and "expected an int in [0, 4294967295]; got -1" in text
    assert 'on the command line: -p lrs "[[0.0001, 0.001, 0.01], [0.0005, 0.005, 0.05]]"' in text


@pytest.mark.parametrize(
    "given, words",
    [
        ({"lrs": "[[1e-3, 1e-2], [1e-4, 1e-3]]"}, ["lrs[0] has 2 value(s), not 3"]),
        ({"sizes": "[64.5, 128]"}, ["sizes[0] is a float, not an int"]),
        ({"n_valid": True}, ["n_valid is True/False", "expected an int >= 1"]),
        ({"pretrained": 1}, ["expected True, False or the path of a state_dict file", "got 1"]),
        ({"sizes": "64, 128]"}, ["not a literal value", "no code is run"]),
        ({"sizes": "[]"}, ["sizes is empty"]),
        ({"lrs": [[float("nan"), 1, 1], [1, 1, 1]]}, ["lrs[0][0] is not finite"]),
        ({"dataset": 2017}, ["parameter dataset", "expected one of 'isic2016'", "got 2017"]),
        ({"data_dir": 2017}, ["parameter data_dir", "expected a path", "-r data_dir 2017"]),
    ],
)
def test_wrong_types_are_named(given: dict, words: list) -> None:
    with pytest.raises(ParameterError) as err:
        resolve_params(CHAPTER, "smoke", given)
    assert err.value.name == next(iter(given))
    for word in words:
        assert word in str(err.value)


def test_text_is_never_run_as_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or [1, 1]"
    with pytest.raises(ParameterError, match="not a literal value"):
        resolve_params(CHAPTER, "smoke", {"epochs": code})
    assert not marker.exists()


def test_int_for_float_and_at_least_one_epoch() -> None:
    declared = [
        Param(
            "lr",
            "float",
            "rate",
            {"smoke": 1e-3, "laptop": 1e-2, "colab": 1e-2, "full": 1e-2},
            low=0,
            low_open=True,
        ),
        Param(
            "epochs_frozen",
            "int",
            "f",
            {"smoke": 0, "laptop": 1, "colab": 1, "full": 1},
            low=0,
            role="epochs",
        ),
        Param(
            "epochs",
            "int",
            "e",
            {"smoke": 0, "laptop": 5, "colab": 5, "full": 5},
            low=0,
            role="epochs",
        ),
    ]
    p = resolve(declared, "smoke", {"lr": 1, "epochs": 2})
    assert (p.lr, p.epochs) == (1.0, 2) and isinstance(p.lr, float)
    with pytest.raises(ParameterError, match="at least one training epoch") as err:
        resolve(declared, "full", {"epochs_frozen": 0, "epochs": "0"})
    assert "epochs_frozen=0, epochs=0" in str(err.value)


def test_a_declaration_that_does_not_fit_its_own_profiles_is_refused() -> None:
    with pytest.raises(ValueError, match="profile smoke's value 63 does not fit"):
        Param(
            "size",
            "int",
            "side",
            {"smoke": 63, "laptop": 64, "colab": 64, "full": 64},
            multiple_of=8,
        )
    with pytest.raises(ValueError, match="without '='"):
        Param(
            "size",
            "int",
            "side (the paper: size=448)",
            {"smoke": 64, "laptop": 448, "colab": 448, "full": 448},
        )
    with pytest.raises(ValueError, match="no value for profile"):
        Param("size", "int", "side", {"smoke": 64})


def test_a_name_papermill_injected_that_the_chapter_lacks_stops_it() -> None:
    """papermill only logs a warning for ``-p epoch 1``; the chapter reads its injected cell."""
    injected = ["# Parameters (papermill)...\n", "# Parameters\nepoch = 1\nseed = 2\n"]
    with pytest.raises(ParameterError) as err:
        resolve_params(CHAPTER, "smoke", {"In": injected, "seed": 2})
    assert list(err.value.problems) == ["epoch"] and "did you mean epochs?" in str(err.value)
    assert resolve_params(CHAPTER, "smoke", {"In": injected[:1]}).seed == 0  # no papermill


def test_profile_and_overwrite_are_checked() -> None:
    with pytest.raises(
        ParameterError, match="parameter profile: expected one of smoke, laptop, colab, full"
    ):
        resolve_params(CHAPTER, "fast", {})
    assert resolve_params(CHAPTER, "smoke", {"overwrite": "True"}).overwrite is True
    assert resolve_params(CHAPTER, "smoke", {}).overwrite is False
    with pytest.raises(ParameterError, match="parameter overwrite .*expected True or False"):
        resolve_params(CHAPTER, "smoke", {"overwrite": "yes"})


# --- dataset and data_dir ----------------------------------------------------------------------


@pytest.mark.parametrize("with_data_dir", [False, True])
def test_an_unknown_dataset_is_named_with_or_without_data_dir(
    with_data_dir: bool, tmp_path: Path
) -> None:
    given = {"dataset": "isic_2017", "data_dir": str(tmp_path) if with_data_dir else None}
    with pytest.raises(ParameterError) as err:
        resolve_params(CHAPTER, "smoke", given)
    assert err.value.name == "dataset"
    assert "got 'isic_2017' (dataset is not a valid choice; did you mean 'isic2017'?)" in str(
        err.value
    )
    assert "'isic2016', 'isic2017', 'isic2018', 'ph2', 'folder', 'synthetic'" in str(err.value)


def test_data_dir_must_be_an_existing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "isic2018"
    with pytest.raises(DataError, match="data_dir does not exist") as err:
        resolve_params(CHAPTER, "smoke", {"dataset": "isic2018", "data_dir": str(missing)})
    assert err.value.path == missing and "fix: pass data_dir=" in str(err.value)
    (tmp_path / "archive.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="data_dir is a file, not a folder"):
        resolve_params(
            CHAPTER, "smoke", {"dataset": "isic2018", "data_dir": tmp_path / "archive.zip"}
        )
    with pytest.raises(DataError, match="dataset='isic2018' needs data_dir"):
        resolve_params(CHAPTER, "smoke", {"dataset": "isic2018"})
    p = resolve_params(CHAPTER, "smoke", {"dataset": "isic2018", "data_dir": str(tmp_path)})
    assert (p.dataset, p.data_dir) == ("isic2018", str(tmp_path))


def test_data_dir_error_makes_no_run_folder(tmp_path: Path, runs: Path) -> None:
    nb = prepare(CHAPTER, tmp_path, {"dataset": "isic2018", "data_dir": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="data_dir does not exist"):
        run_opening(nb)
    assert made(runs) == []


# --- pretrained --------------------------------------------------------------------------------


def test_pretrained_path_must_hold_a_state_dict(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.pth": "no such file",
        tmp_path: "is a folder",
        tmp_path / "notes.txt": "is not a PyTorch weights file",
        tmp_path / "list.pth": "holds no state_dict",
    }
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    for path, words in cases.items():
        with pytest.raises(ParameterError) as err:
            resolve_params(CHAPTER, "smoke", {"pretrained": str(path)})
        assert err.value.name == "pretrained"
        assert f"parameter pretrained={str(path)!r}" in str(err.value) and words in str(err.value)
        assert "weights_only" not in str(err.value)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "r34.pth")
    p = resolve_params(CHAPTER, "smoke", {"pretrained": str(tmp_path / "r34.pth")})
    assert p.pretrained == str(tmp_path / "r34.pth")


def test_a_missing_pretrained_file_stops_the_first_cell(tmp_path: Path, runs: Path) -> None:
    nb = prepare("003_slsdeep", tmp_path, {"pretrained": str(tmp_path / "resnet50.pth")})
    with pytest.raises(ParameterError, match="pretrained=.*resnet50.pth.*no such file"):
        run_opening(nb)
    assert made(runs) == [] and made(tmp_path / "cache") == []


@pytest.fixture
def offline(tmp_path: Path, monkeypatch) -> Path:
    """No download server and an empty torch cache (``$TORCH_HOME``); returns the cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        pretrained_module,
        "download_problem",
        lambda url, timeout=5.0: "URLError: <urlopen error [Errno -3] no network>",
    )
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.mark.parametrize("weights", [None, "resnet34"])
def test_pretrained_true_offline_fails_at_once_in_a_full_run(
    offline: Path, weights: str | None, tmp_path: Path
) -> None:
    given = {"data_dir": str(tmp_path), "pretrained": True}
    with pytest.raises(ParameterError) as err:
        resolve(get_recipe(CHAPTER).params, "full", given, weights=weights)
    text = str(err.value)
    assert err.value.name == "pretrained" and text.startswith("parameter pretrained=True")
    assert "cannot be downloaded (URLError" in text and str(offline) in text
    assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in text
    assert "-p pretrained /path/to/resnet34-b627a593.pth" in text
    assert "pretrained=False to train from scratch" in text
    assert ("vgg16-397923af.pth" in text) == (weights is None)  # any encoder, when not told


def test_pretrained_true_in_a_full_run_uses_the_cache_or_the_server(
    offline: Path, tmp_path: Path, monkeypatch
) -> None:
    given = {"data_dir": str(tmp_path)}  # the full profile's pretrained=True
    offline.mkdir(parents=True)
    (offline / "resnet34-b627a593.pth").write_bytes(b"cached")
    assert resolve_params(CHAPTER, "full", given).pretrained
    monkeypatch.setattr(pretrained_module, "download_problem", lambda url, timeout=5.0: None)
    assert resolve_params("003_slsdeep", "full", given).pretrained is True


def test_smoke_keeps_the_recorded_fallback_for_pretrained_true(offline: Path) -> None:
    p = resolve_params(CHAPTER, "smoke", {"pretrained": True})
    assert p.pretrained is True  # the model warns and records the fallback in weights_source


def test_full_run_without_weights_makes_no_run_folder(
    offline: Path, tmp_path: Path, runs: Path
) -> None:
    nb = prepare("004_vgg16_fcn", tmp_path, {"profile": "full", "data_dir": str(tmp_path)})
    with pytest.raises(ParameterError, match="pretrained=True"):
        run_opening(nb)
    assert made(runs) == []


# --- reruns ------------------------------------------------------------------------------------

PARAMS = {"profile": "smoke", "dataset": "synthetic", "epochs": (6, 2), "seed": 0}
EARLIER = [
    "history.csv",
    "metrics.json",
    "per_image_valid.csv",
    "figures/learning_curves.png",
    "models/final.pth",
    "models/.final.pth.k2j4h5g6.pth",  # left by an interrupted atomic write
    "predictions/valid/ISIC_0000001_segmentation.png",
    "fold0/history.csv",
    "fold0/models/train.pth",
]


def earlier_run(out: Path, params: dict = PARAMS) -> None:
    """A finished run in ``out``, as the chapters leave it."""
    Run(out, CHAPTER, "p", params, {})
    for name in EARLIER:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("earlier run")


def listing(folder: Path) -> list[str]:
    """The folder's files, but the lock a run in this process holds while unfinished."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != chapter.LOCK_FILE]
    return sorted(str(p.relative_to(folder)) for p in files)


def test_a_rerun_with_other_parameters_stops_and_says_what_differs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    earlier_run(out)
    before = {name: (out / name).read_text() for name in listing(out)}
    with pytest.raises(RunFolderError) as err:
        Run(out, CHAPTER, "p", {**PARAMS, "epochs": [2, 1], "seed": 1}, {})
    text = str(err.value)
    assert text.startswith(f"{out}: out_dir holds an earlier run with other parameters")
    assert "epochs: [6, 2] -> [2, 1]; seed: 0 -> 1" in text
    assert "pass a new out_dir" in text and "overwrite=True" in text
    assert err.value.path == out
    assert {name: (out / name).read_text() for name in listing(out)} == before  # untouched


def test_a_rerun_with_the_same_parameters_starts_afresh(tmp_path: Path) -> None:
    out = tmp_path / "run"
    earlier_run(out)
    run = Run(out, CHAPTER, "p", {**PARAMS, "epochs": [6, 2]}, {})  # a list is the same value
    assert listing(out) == ["params.json"]
    assert sorted(p.name for p in out.iterdir()) == [
        chapter.LOCK_FILE,
        "params.json",
    ]  # folders gone
    assert json.loads((out / "params.json").read_text())["epochs"] == [6, 2]
    run.add_result("valid", "v", pd.DataFrame({"jaccard": [0.5]}), {})
    assert listing(out) == ["params.json", "per_image_valid.csv"]


def test_overwrite_replaces_an_earlier_run_and_keeps_files_a_run_never_writes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    earlier_run(out)
    (out / "my_notes.txt").write_text("mine")
    other = {**PARAMS, "seed": 5, "overwrite": True}  # as resolve_params passes -p overwrite True
    with pytest.warns(UserWarning, match="kept 1 file\\(s\\) that a run does not write: my_notes"):
        Run(out, CHAPTER, "p", other, {})
    assert listing(out) == ["my_notes.txt", "params.json"]
    recorded = json.loads((out / "params.json").read_text())
    assert recorded["seed"] == 5 and "overwrite" not in recorded
    earlier_run(out / "second")
    Run(out / "second", CHAPTER, "p", {**PARAMS, "seed": 6}, {}, overwrite=True)
    assert listing(out / "second") == ["params.json"]


def test_overwrite_from_the_notebook_parameters(tmp_path: Path, runs: Path) -> None:
    out = tmp_path / "run"
    earlier_run(out)
    nb = prepare(CHAPTER, tmp_path, {"out_dir": str(out), "seed": 3})
    with pytest.raises(RunFolderError, match="seed: 0 -> 3"):
        run_opening(nb)
    assert "history.csv" in listing(out)
    nb = prepare(CHAPTER, tmp_path, {"out_dir": str(out), "seed": 3, "overwrite": True})
    run_opening(nb)
    assert listing(out) == ["params.json"]


def test_a_folder_holding_only_a_failed_runs_params_is_reused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    Run(out, CHAPTER, "p", PARAMS, {})  # the run stopped before writing anything else
    Run(out, CHAPTER, "p", {**PARAMS, "seed": 2}, {})
    assert json.loads((out / "params.json").read_text())["seed"] == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_is_never_used_nor_cleared(
    overwrite: bool, tmp_path: Path
) -> None:
    out = tmp_path / "thesis"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "plot.png").write_bytes(b"png")
    (out / "history.csv").write_text("mine")
    with pytest.raises(RunFolderError, match="not a chapter run's folder \\(it has no params"):
        Run(out, CHAPTER, "p", PARAMS, {}, overwrite=overwrite)
    (out / "params.json").write_text('["not", "a", "run"]')
    with pytest.raises(RunFolderError, match="params.json was not written by a chapter run"):
        Run(out, CHAPTER, "p", PARAMS, {}, overwrite=overwrite)
    with pytest.raises(RunFolderError, match="nothing is deleted"):
        chapter.clear_run_folder(out)
    assert listing(out) == ["figures/plot.png", "history.csv", "params.json"]


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(RunFolderError, match="out_dir is a file, not a folder"):
        Run(tmp_path / "out", CHAPTER, "p", PARAMS, {})


HOLD = """
import sys, time
from lessons_lib.chapter import Run
Run(sys.argv[1], "002_resnet34_unet", "p", {"dataset": "synthetic", "profile": "smoke"}, {})
print("holding", flush=True)
time.sleep(600)
"""


def test_a_second_run_into_a_folder_in_use_stops_at_once_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "holding"
        before = listing(out)
        with pytest.raises(RunFolderError) as err:
            Run(out, CHAPTER, "p", PARAMS, {})
        text = str(err.value)
        assert f"out_dir is in use by another run (PID {first.pid} on " in text
        assert "started 20" in text and "pass another out_dir" in text
        assert listing(out) == before  # nothing read, cleared or written
    finally:
        first.kill()
        first.wait()
    Run(out, CHAPTER, "p", PARAMS, {})  # a killed run's lock goes with it: the folder is free


def test_finish_removes_the_lock_and_a_rerun_in_the_same_process_takes_it_back(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path / "run", CHAPTER, "p", PARAMS, {})
    assert (run.out / chapter.LOCK_FILE).read_text().startswith(f"PID {os.getpid()} on ")
    again = Run(tmp_path / "run", CHAPTER, "p", PARAMS, {})  # the opening run twice in a kernel
    again.finish("synthetic:x", n_parameters=None, weights_source=None)
    assert not (run.out / chapter.LOCK_FILE).exists()


def papermill_output(path: Path, chapter_id: str, output: Path | str) -> Path:
    """The notebook papermill writes (at its start) for ``chapter_id`` into ``output``."""
    meta = {"input_path": f"notebooks/{chapter_id}.ipynb", "output_path": str(output)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {"papermill": meta}}))
    return path


@pytest.mark.parametrize("relative", [False, True])
def test_the_notebook_papermill_writes_for_this_run_may_be_in_out_dir(
    relative: bool, tmp_path: Path
) -> None:
    """``papermill <chapter>.ipynb runs/x/out.ipynb -p out_dir runs/x``: accepted, kept, and
    not mentioned; a notebook of another chapter or another output is another's file."""
    out = tmp_path / "runs" / "x"
    notebook = out / "out.ipynb"
    papermill_output(notebook, CHAPTER, "runs/x/out.ipynb" if relative else notebook)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Run(out, CHAPTER, "p", PARAMS, {})
        for name in EARLIER:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text("earlier run")
        Run(out, CHAPTER, "p", PARAMS, {}, overwrite=True)  # its files cleared, not the notebook
    assert listing(out) == ["out.ipynb", "params.json"]
    for other, chapter_id in [(tmp_path / "elsewhere.ipynb", CHAPTER), (notebook, "001_cdnn29")]:
        folder = tmp_path / f"other-{chapter_id}"
        papermill_output(folder / "out.ipynb", chapter_id, other)
        with pytest.raises(RunFolderError, match="holds files but is not a chapter run's folder"):
            Run(folder, CHAPTER, "p", PARAMS, {})


def test_a_relative_out_dir_is_taken_from_the_working_folder_once(
    tmp_path: Path, monkeypatch
) -> None:
    """A relative ``out_dir`` (``-p out_dir runs/mine``) names one folder for the whole run:
    files written under it (the predictor's weights paths) do not nest it twice."""
    monkeypatch.chdir(tmp_path)
    run = Run("runs/mine", CHAPTER, "p", PARAMS, {})
    assert run.out == tmp_path / "runs" / "mine" and run.out.is_absolute()
    monkeypatch.chdir(tmp_path / "runs")  # a chapter may change folder later: the run does not
    run.add_result("valid", "v", pd.DataFrame({"jaccard": [0.5]}), {})
    assert (tmp_path / "runs" / "mine" / "per_image_valid.csv").is_file()


def test_an_empty_existing_folder_is_used(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Run(tmp_path, CHAPTER, "p", PARAMS, {})
    assert listing(tmp_path) == ["params.json"]


def test_a_recipe_value_changed_in_the_library_reaches_the_notebook(
    tmp_path: Path, runs: Path, monkeypatch
) -> None:
    """The notebook holds no value of its own: chapter 001's batch size changed in its recipe
    (and nowhere else) is the batch size the chapter runs with and records."""
    import dataclasses

    recipe = get_recipe("001_cdnn29")
    params = tuple(
        dataclasses.replace(p, values={**p.values, "smoke": 3}) if p.name == "batch_size" else p
        for p in recipe.params
    )
    monkeypatch.setattr(recipe, "params", params)
    namespace = run_opening(prepare("001_cdnn29", tmp_path))
    assert namespace["P"].batch_size == 3
    recorded = json.loads((runs / "001_cdnn29" / "smoke-synthetic" / "params.json").read_text())
    assert recorded["batch_size"] == 3


def test_beside_baseline_scores_the_same_images_and_records_the_gap(
    tmp_path: Path, synthetic_data
) -> None:
    """The classical baseline segments exactly the images the run scored (here the test
    split's), scored the same way; the gap is the run's mean JA minus the baseline's,
    in ``metrics.json`` and its per-image CSV beside the run's."""
    from lessons_lib.baseline import ClassicalBaseline

    _, data = synthetic_data
    ids = [e["id"] for e in data.entries("test")]
    ours = pd.DataFrame({"jaccard": [1.0] + [0.0] * (len(ids) - 2) + [0.5]}, index=ids)
    ours["jaccard"] *= 0.5 * len(ids) / ours["jaccard"].sum()  # a mean of 0.5
    run = Run(tmp_path / "run", CHAPTER, "p", PARAMS, {})
    table = run.beside_baseline(data, "test", ours)
    alone, _, _ = ClassicalBaseline().evaluate(data, "test", ids=ids)
    floor = alone["jaccard"].mean()
    assert table.loc["classical baseline", "mean JA"] == pytest.approx(floor, abs=1e-3)
    assert table.loc["gap", "mean JA"] == pytest.approx(0.5 - floor, abs=1e-3)
    stored = pd.read_csv(tmp_path / "run" / "per_image_baseline_test.csv", index_col=0)
    assert sorted(stored.index) == sorted(ids)
    run.finish("synthetic")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    beside = record["details"]["baseline"]["test"]
    assert beside["n_images"] == len(ids) and beside["jaccard"] == 0.5
    assert beside["gap"] == pytest.approx(0.5 - floor, abs=1e-3)
    assert not record["results"]  # the baseline is not one of the run's methods
    with pytest.raises(ValueError, match="not in the .valid. split"):
        run.beside_baseline(data, "valid", ours)  # these ids are not validation images


def test_beside_baseline_prints_the_numbers_its_table_shows(
    tmp_path: Path, synthetic_data, capsys
) -> None:
    """A mean of 0.73949 is 0.739 in the printed line and in the table alike (the line once
    rounded the 4-decimal record, 0.7395, again and printed 0.740 above the table's 0.739)."""
    _, data = synthetic_data
    ids = [e["id"] for e in data.entries("test")]
    ours = pd.DataFrame({"jaccard": [0.73949] * len(ids)}, index=ids)
    table = Run(tmp_path / "run", CHAPTER, "p", PARAMS, {}).beside_baseline(data, "test", ours)
    line = capsys.readouterr().out
    assert table.loc["this chapter", "mean JA"] == 0.739
    assert "this chapter's mean JA 0.739 |" in line
    floor, gap = table.loc["classical baseline", "mean JA"], table.loc["gap", "mean JA"]
    assert f"classical baseline {floor:.3f} " in line and f"gap {gap:+.3f} " in line


def test_display_path_hides_the_machine_but_keeps_a_usable_path(tmp_path: Path, monkeypatch):
    runs, cache, home = tmp_path / "runs", tmp_path / "cache", tmp_path / "home"
    monkeypatch.setenv("LESSONS_RUNS", str(runs))
    monkeypatch.setenv("LESSONS_CACHE", str(cache))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    show = chapter.display_path
    assert (
        show(runs / "000_lesionseg" / "metrics.json") == "$LESSONS_RUNS/000_lesionseg/metrics.json"
    )
    assert show(runs) == "$LESSONS_RUNS"
    assert show(cache / "prepared" / "x") == "$LESSONS_CACHE/prepared/x"
    assert show(tmp_path / "runsx" / "a") == str(tmp_path / "runsx" / "a")  # a name, not a prefix
    assert show(chapter.REPO / "runs" / "a.json") == "runs/a.json"
    assert show(home / ".cache" / "lessons_lib") == "~/.cache/lessons_lib"
    assert show(home) == "~"
    assert show("data/PH2") == "data/PH2"
    assert show("/data/PH2") == "/data/PH2"
    monkeypatch.delenv("LESSONS_RUNS")
    assert show(runs / "a") == str(runs / "a")
