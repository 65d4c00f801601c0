"""benchmarks/chapters.py reads each chapter's recipe: one value changed in a recipe changes what
the benchmarks measure and the cost estimate alike, nothing else edited (issue #18)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from lessons_lib.recipes import CHAPTERS, get_recipe

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (benchmarks/ is scripts, not a package), loaded
    afresh, with its own folder importable (``laptop.py`` imports ``measure``)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/chapters.py`` as a module."""
    yield load_benchmark("chapters")
    sys.modules.pop("benchmarks.chapters", None)


def _set_full(monkeypatch, recipe, name: str, value) -> None:
    """Change the full-profile value of ``recipe``'s parameter ``name`` for this test only."""
    params = tuple(
        dataclasses.replace(p, values={**p.values, "full": value}) if p.name == name else p
        for p in recipe.params
    )
    assert params != recipe.params, f"{recipe.chapter} has no parameter {name}"
    monkeypatch.setattr(recipe, "params", params)


def _max_rotate(transforms: list) -> list[float]:
    """The largest rotations of fastai's affine batch transforms (``aug_transforms`` merges its
    rotation into one affine transform)."""
    return [
        float(f.keywords["max_deg"])
        for t in transforms
        for f in getattr(t, "aff_fs", [])
        if "max_deg" in getattr(f, "keywords", {})
    ]


def _one(chapters: list, name: str):
    (found,) = [c for c in chapters if c.chapter == name]
    return found


def test_every_chapter_is_read_from_its_recipe(bench) -> None:
    chapters = bench.chapters()
    assert [c.chapter for c in chapters] == list(CHAPTERS)
    for c in chapters:
        R = get_recipe(c.chapter)  # noqa: N806
        P = R.profile("full")  # noqa: N806
        assert vars(c.params) == vars(P)
        name, kwargs = R.network(P)
        assert c.model == (name, {**kwargs, **R.cost_overrides(P)})
        assert c.model[1].get("pretrained", False) is False  # the benchmarks download nothing
        trained = [s for s in R.cost_stages(P, R.splits(P)) if s.images_trained]
        sizes = {(s.size, s.size) if isinstance(s.size, int) else tuple(s.size) for s in trained}
        assert {hw for hw, _ in c.stages} == sizes
        assert {bs for _, bs in c.stages} == {s.batch_size for s in trained}
        assert len(set(c.stages)) == len(c.stages)
        assert c.prepare_size == max(min(hw) for hw, _ in c.stages)
        assert c.in_channels == R.in_channels(P)
        assert c.normalize == R.normalize(P)
        assert (c.loader_workers, c.prepare_workers) == (P.loader_workers, P.prepare_workers)
        assert [type(t) for t in c.augmentation()] == [type(t) for t in R.augmentation(P)]
        assert [type(t) for t in c.input_transforms()] == [type(t) for t in R.input_transforms(P)]
        c.build()  # on the meta device: the registry accepts the recipe's arguments


def test_a_benchmark_script_takes_chapter_ids_and_refuses_others(bench, capsys) -> None:
    """``python benchmarks/bench_smoke.py [CHAPTER ...]`` (and the models and pipeline scripts):
    ids as given, all by default, an unknown id (``--help`` was once run as a notebook) an error
    that lists the valid ones."""
    doc = "A benchmark.\n\nMore."
    assert bench.names_from_command_line(doc, []) is None
    assert bench.names_from_command_line(doc, ["001_cdnn29", "000_lesionseg"]) == [
        "001_cdnn29",
        "000_lesionseg",
    ]
    assert bench.names_from_command_line(doc, ["notes"], others=["notes"]) == ["notes"]
    # a chapter's number names it too, as in laptop.py and run.py (one rule: chapter_ids)
    assert bench.names_from_command_line(doc, ["004", "001_cdnn29"]) == [
        "004_vgg16_fcn",
        "001_cdnn29",
    ]
    with pytest.raises(SystemExit) as stop:
        bench.names_from_command_line(doc, ["001_cdnn29", "--help"])
    assert stop.value.code == 0 and "A benchmark." in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        bench.names_from_command_line(doc, ["001", "005", "00", "notes"])
    error = capsys.readouterr().err
    assert stop.value.code == 2
    assert "unknown chapter(s) 005, 00, notes" in error
    assert "valid: " + ", ".join(CHAPTERS) in error


def test_run_and_laptop_name_chapters_by_the_same_rule(tmp_path: Path, capsys) -> None:
    """``run.py --chapter`` and ``laptop.py --chapters`` take an id or its number; a name that is
    neither is an error listing the valid ids (laptop.py once ran no chapter at all, silently,
    when given an id such as ``004_vgg16_fcn``)."""
    laptop = load_benchmark("laptop")
    calls = []

    def run_chapter(stem, data_dir, dataset, params, out):
        calls.append(stem)
        return laptop.read_run(write_laptop_run(out / stem, 0.7, 0.65))

    laptop.run_chapter = run_chapter
    argv = ["--data-dir", str(tmp_path), "--out", str(tmp_path / "runs"), "--chapters"]
    laptop.main([*argv, "004_vgg16_fcn", "000"])
    assert calls == ["000_lesionseg", "004_vgg16_fcn"]  # in chapter order
    with pytest.raises(SystemExit) as stop:
        laptop.main([*argv, "4"])
    assert stop.value.code == 2 and "unknown chapter(s) 4; valid: 000_lesionseg" in (
        capsys.readouterr().err
    )
    run = load_benchmark("run")
    with pytest.raises(SystemExit) as stop:
        run.main(["nothing", "--chapter", "002", "--chapter", "two"])
    assert stop.value.code == 2 and "unknown chapter(s) two" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("chapter", "name", "value"),
    [("001_cdnn29", "batch_size", 9), ("002_resnet34_unet", "batch_size", (8, 4))],
)
def test_a_batch_size_changed_in_the_recipe_changes_benchmarks_and_cost(
    bench, monkeypatch, chapter: str, name: str, value
) -> None:
    R = get_recipe(chapter)  # noqa: N806
    before = _one(bench.chapters(), chapter)
    cost_before = R.estimate_cost("full")

    _set_full(monkeypatch, R, name, value)
    after = _one(bench.chapters(), chapter)
    cost_after = R.estimate_cost("full")

    first = value if isinstance(value, int) else value[0]
    assert before.stages[0][1] != first
    assert after.stages[0][1] == first  # the benchmark measures the new batch size
    assert [hw for hw, _ in after.stages] == [hw for hw, _ in before.stages]
    assert [s.batch_size for s in cost_after.stages] != [s.batch_size for s in cost_before.stages]
    assert first in {s.batch_size for s in cost_after.stages}
    memory = [cost_after.memory_bytes(s) for s in cost_after.stages]
    assert memory != [cost_before.memory_bytes(s) for s in cost_before.stages]


def test_a_rotation_changed_in_the_recipe_changes_the_benchmarked_augmentation(
    bench, monkeypatch
) -> None:
    R = get_recipe("002_resnet34_unet")  # noqa: N806
    declared = R.profile("full").max_rotate
    assert _max_rotate(_one(bench.chapters(), R.chapter).augmentation()) == [declared]

    _set_full(monkeypatch, R, "max_rotate", declared + 20.0)
    assert _max_rotate(_one(bench.chapters(), R.chapter).augmentation()) == [declared + 20.0]


def test_measure_sees_the_memory_of_a_child_process() -> None:
    """``benchmarks/measure.py`` (the README's ``make test`` figures): a command whose child
    holds 300 MB for a second is measured at 300 MB or more, and its wall time and status."""
    measure = load_benchmark("measure")
    child = "import time, numpy; a = numpy.ones(300 * 2**20 // 8); time.sleep(1.5)"
    call = f"subprocess.call([sys.executable, '-c', {child!r}])"
    parent = f"import subprocess, sys; sys.exit({call} + 3)"
    result = measure.measure([sys.executable, "-c", parent], interval=0.2)
    assert result["returncode"] == 3
    assert result["seconds"] >= 1.5
    assert 300 * 2**20 <= result["peak_bytes"] < 2 * 2**30


def write_laptop_run(
    run: Path, jaccard: float, baseline: float, seed: int = 0, threads: int = 2, **params
) -> Path:
    """A finished laptop run's folder as the chapter writes it (the fields the benchmark reads)."""
    import json

    run.mkdir(parents=True)
    beside = {
        "n_images": 4,
        "jaccard": jaccard,
        "baseline_jaccard": baseline,
        "gap": round(jaccard - baseline, 4),
    }
    record = {
        "chapter": "000_lesionseg",
        "wall_time_s": 600.0,
        "environment": {"cpu_count": threads},
        "details": {"baseline": {"test": beside}},
        "results": [{"name": "external", "metrics": {"jaccard": 0.61234}}],
    }
    (run / "metrics.json").write_text(json.dumps(record))
    given = {"profile": "laptop", "seed": seed, "out_dir": str(run), **params}
    (run / "params.json").write_text(json.dumps(given))
    return run


def test_the_laptop_benchmark_builds_its_stand_in_and_reads_a_run(tmp_path: Path) -> None:
    """``benchmarks/laptop.py``: the PH2-sized stand-in is a seeded draw of ISIC 2017 training
    pairs in the ``folder`` layout (the same draw twice), and a finished run folder becomes its
    row: the chapter's JA, the baseline's on the same images and the gap, from ``metrics.json``;
    a run given fewer than the budget's two threads leaves "within budget" open."""
    from lessons_lib.data import find_pairs
    from lessons_lib.synth import make_dataset

    laptop = load_benchmark("laptop")
    isic = make_dataset(tmp_path / "isic2017", n=6, n_valid=1, n_test=1, size=32, seed=1)
    first = laptop.make_proxy(isic, tmp_path / "a", n=4)
    again = laptop.make_proxy(isic, tmp_path / "b", n=4)
    pairs = find_pairs(first, "folder")
    assert len(pairs) == 4 and [p.name for p, _ in pairs] == [
        p.name for p, _ in find_pairs(again, "folder")
    ]
    row = laptop.read_run(write_laptop_run(tmp_path / "run", 0.8, 0.7))
    assert (row["minutes"], row["JA"], row["baseline JA"], row["gap"]) == (10.0, 0.8, 0.7, 0.1)
    assert row["within budget"] is True and row["external JA"] == 0.6123
    assert (row["seed"], row["threads"]) == (0, 2)
    assert "| 000_lesionseg | 0 | 2 | 10.0 |" in laptop.table([row])
    alone = laptop.read_run(write_laptop_run(tmp_path / "one", 0.8, 0.7, threads=1))
    assert alone["within budget"] == "-"


def test_the_laptop_benchmark_averages_the_gap_over_seeds(tmp_path: Path) -> None:
    """``--seeds``: one run per seed and chapter, each with ``-p seed S`` into its own folder;
    the summary averages each seed's runs first (a split counts once), gives the lowest and
    highest gap, and refuses to average runs that differ in more than the seed."""
    laptop = load_benchmark("laptop")
    rows = [
        laptop.read_run(write_laptop_run(tmp_path / "a", 0.80, 0.70, seed=0)),
        laptop.read_run(write_laptop_run(tmp_path / "b", 0.60, 0.70, seed=0)),
        laptop.read_run(write_laptop_run(tmp_path / "c", 0.75, 0.80, seed=1)),
    ]
    (summary,) = laptop.over_seeds(rows)
    assert (summary["seeds"], summary["runs"]) == ("0 1", 3)
    assert summary["mean JA"] == pytest.approx((0.70 + 0.75) / 2)  # not (0.8 + 0.6 + 0.75) / 3
    assert summary["mean baseline JA"] == pytest.approx(0.75)
    assert summary["mean gap"] == pytest.approx((0.0 + -0.05) / 2)
    assert (summary["lowest gap"], summary["highest gap"]) == (-0.1, 0.1)
    assert summary["above the baseline"] == "1 of 3 runs"
    assert laptop.over_seeds(rows[:2]) == []  # one seed: nothing to summarise
    other = laptop.read_run(write_laptop_run(tmp_path / "d", 0.7, 0.7, seed=2, lr=0.01))
    with pytest.raises(ValueError, match="differ in lr"):
        laptop.over_seeds([*rows, other])

    calls = []

    def run_chapter(stem, data_dir, dataset, params, out):
        calls.append((stem, params["seed"], out.name))
        folder = out / stem
        row = laptop.read_run(write_laptop_run(folder, 0.7, 0.65, seed=int(params["seed"])))
        return row

    laptop.run_chapter = run_chapter
    record = tmp_path / "record.md"
    argv = ["--data-dir", str(tmp_path), "--chapters", "000", "--seeds", "0", "1"]
    assert laptop.main([*argv, "--out", str(tmp_path / "runs"), "--record", str(record)]) == 0
    assert calls == [("000_lesionseg", "0", "seed0"), ("000_lesionseg", "1", "seed1")]
    text = record.read_text()
    assert "Over seeds" in text and "| 000_lesionseg | 0 1 | 2 | 0.7 | 0.65 | 0.05 |" in text
    read = laptop.read_table(text)  # the record's table read back: the same rows
    assert [{k: v for k, v in r.items() if k != "params"} for r in read] == [
        {
            k: v
            for k, v in laptop.read_run(tmp_path / "runs" / f"seed{s}" / "000_lesionseg").items()
            if k != "params"
        }
        for s in (0, 1)
    ]
    assert laptop.table(laptop.over_seeds(read)) in text
    with pytest.raises(SystemExit):  # the seed given twice
        laptop.main([*argv, "--param", "seed=3", "--out", str(tmp_path / "again")])


STAND_IN_RECORD = BENCHMARKS / "laptop-stand-in.md"
QUOTED = 0.00055
"""How far a chapter's 3-decimal quote may lie from the record's 4-decimal value of the same
number (each rounded from the run's own: 0.7395 in the record may be 0.739 in the chapter)."""


def measured_paragraph(chapter: str) -> str:
    """The chapter's laptop section's **Measured** text (one Markdown cell)."""
    import json

    notebook = json.loads((BENCHMARKS.parent / "notebooks" / f"{chapter}.ipynb").read_text())
    (text,) = [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "markdown" and "**Measured**" in "".join(cell["source"])
    ]
    return text


def test_each_chapter_quotes_its_rows_of_the_laptop_record() -> None:
    """The laptop numbers a chapter's page shows are the record's, typed in two places: each
    chapter quotes its first row (the run it reports: minutes, peak memory, test JA beside the
    baseline's, the gap, the external JA) and every other row of its own ("scored ... against
    the baseline's ... (gap ...), external ..."), and nothing else in that form; the record's
    summary over seeds is what ``benchmarks/laptop.py`` computes from its rows, and a chapter
    run on several seeds quotes its mean gap ("the gap averages ... (from ... to ...)")."""
    import re

    laptop = load_benchmark("laptop")
    rows = laptop.read_table(STAND_IN_RECORD.read_text())
    assert {r["chapter"] for r in rows} == set(CHAPTERS)
    summary = {s["chapter"]: s for s in laptop.over_seeds(rows)}
    for chapter in CHAPTERS:
        reported, *others = [r for r in rows if r["chapter"] == chapter]
        assert (reported["seed"], reported["threads"]) == (0, 2), chapter
        text = measured_paragraph(chapter)
        cost = re.search(r"took (\d+\.\d) minutes[^;]*?\(peak memory (\d+\.\d\d) GiB\)", text)
        assert cost, f"{chapter}: no 'took ... minutes (peak memory ... GiB)'"
        assert tuple(map(float, cost.groups())) == (reported["minutes"], reported["peak GiB"])
        score = re.search(
            r"test mean JA (\d\.\d{3}) against the classical baseline's (\d\.\d{3}) on the "
            r"same (\d+) images \(gap ([+-]\d\.\d{3})",
            text,
        )
        assert score, f"{chapter}: no 'test mean JA ... against the classical baseline's ...'"
        external = re.search(r"external (\d\.\d{3})", text[score.end() :])
        quoted = [*map(float, score.groups()), float(external.group(1))]
        recorded = [reported[c] for c in ("JA", "baseline JA", "test images", "gap", "external JA")]
        assert quoted == pytest.approx(recorded, abs=QUOTED), chapter
        quotes = [
            list(map(float, q))
            for q in re.findall(
                r"scored (\d\.\d{3}) against the baseline's (\d\.\d{3}) \(gap ([+-]\d\.\d{3})\), "
                r"external (\d\.\d{3})",
                text,
            )
        ]
        for row in others:
            values = [row[c] for c in ("JA", "baseline JA", "gap", "external JA")]
            found = [q for q in quotes if q == pytest.approx(values, abs=QUOTED)]
            assert found, f"{chapter}: the record's run of seed {row['seed']} is not quoted"
            quotes.remove(found[0])
        assert not quotes, f"{chapter} quotes runs the record does not have: {quotes}"
        mean = re.findall(
            r"the gap averages ([+-]?\d\.\d{3}) \(from ([+-]\d\.\d{3}) to ([+-]\d\.\d{3})\)", text
        )
        if chapter in summary:
            over = summary[chapter]
            assert mean, f"{chapter}: runs on several seeds, and no 'the gap averages ...'"
            assert [float(x) for x in mean[0]] == pytest.approx(
                [over["mean gap"], over["lowest gap"], over["highest gap"]], abs=QUOTED
            ), chapter
        else:
            assert not mean, f"{chapter} quotes a mean gap the record does not have"
    assert laptop.table(list(summary.values())) in STAND_IN_RECORD.read_text()


def test_the_laptop_record_ran_the_recipes_laptop_values() -> None:
    """Each chapter's parameters in the stand-in record (its runs' ``params.json``) are its
    recipe's laptop profile of today, but for what the record's command gave (``--param``,
    ``--dataset``, ``--data-dir``) and the run's own folder and seed: a laptop value changed in a
    recipe without measuring it again fails here, before a chapter quotes another run's numbers
    as its profile's."""
    import json
    import re

    text = STAND_IN_RECORD.read_text()
    commands = {
        number: command
        for command in re.findall(r"`python benchmarks/laptop\.py ([^`]*)`", text)
        for number in re.findall(r"--chapters (\d{3})", command)
    }
    for chapter in CHAPTERS:
        # as the record names it, or as laptop.py --record does ("`<chapter>`, seed 0:")
        block = re.search(rf"`{chapter}`(?:, seed 0)?:\n```json\n(.*?)\n```", text, re.S)
        assert block, f"{chapter}: no parameters in the record"
        recorded = json.loads(block.group(1))
        given = dict(re.findall(r"--param (\w+)=(\S+)", commands[chapter[:3]]))
        given |= {"dataset": "folder", "data_dir": "<stand-in>", "out_dir": "<out>", "seed": 0}
        profile = vars(get_recipe(chapter).profile("laptop"))
        for name, value in recorded.items():
            if name in given or name in ("chapter", "profile"):
                continue
            wanted = json.loads(json.dumps(profile[name]))  # as params.json holds it
            assert value == wanted, f"{chapter}: the record ran {name}={value}, not {wanted}"
        assert set(profile) - set(recorded) <= {"overwrite"} | set(given), chapter


def test_the_readme_quotes_the_laptop_records_summary() -> None:
    """README's laptop paragraph quotes the record's summary over seeds: each chapter's mean gap
    ("+0.015 for chapter 000 ... -0.139 for 004"), how many splits, how often above the baseline
    (for the chapter it says so of), and the reported runs' range of minutes."""
    import re

    laptop = load_benchmark("laptop")
    rows = laptop.read_table(STAND_IN_RECORD.read_text())
    summary = {s["chapter"][:3]: s for s in laptop.over_seeds(rows)}
    readme = " ".join((BENCHMARKS.parent / "README.md").read_text().split())
    start = readme.index("So far the laptop profile was measured")
    text = readme[start : readme.index("PH2 itself is still to be measured", start)]
    gaps = dict(
        (number, float(gap))
        for gap, number in re.findall(r"([+-]?\d\.\d{3}) for (?:chapter )?(\d{3})", text)
    )
    assert set(gaps) == set(summary), "the README gives a mean gap for every chapter, no other"
    for number, gap in gaps.items():
        assert gap == pytest.approx(summary[number]["mean gap"], abs=QUOTED), number
    words = {2: "two", 3: "three"}
    splits = sorted({len(s["seeds"].split()) for s in summary.values()})
    assert f"averaged over {' or '.join(words[n] for n in splits)} splits" in text
    for number, above in re.findall(r"for chapter (\d{3}) \(above it on (\w+) splits", text):
        k, n = summary[number]["above the baseline"].split(" runs")[0].split(" of ")
        assert above == words[int(k)], number
    reported = [r["minutes"] for r in rows if (r["seed"], r["threads"]) == (0, 2)]
    low, high = map(int, re.search(r"in (\d+) to (\d+) minutes", text).groups())
    assert (low, high) == (int(min(reported)), round(max(reported))), (min(reported), max(reported))


@pytest.mark.slow
def test_the_gpu_check_runs_every_chapter_tiny_on_a_cpu(tmp_path: Path) -> None:
    """``make gpu-check``'s code path at tiny sizes on the CPU (issue #23): one row per chapter,
    its measured step beside the estimate, written as JSON; without CUDA the real check stops
    with a message that says how to run this one."""
    import json
    import subprocess

    import torch

    script = str(BENCHMARKS / "gpu_check.py")
    out = tmp_path / "gpu-check.json"
    done = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    rows = {r["chapter"]: r for r in record["chapters"]}
    assert list(rows) == list(CHAPTERS) and record["tiny"] and record["device"] == "cpu"
    assert record["cudnn"] == {"deterministic": True, "benchmark": False}  # as the chapters
    for chapter, row in rows.items():
        assert row["input"] == "64x64" and row["batch"] == 2 and row["steps timed"] == 1
        assert row["images/s"] > 0 and row["estimated images/s"] > 0, chapter
        assert row["speed ratio"] == pytest.approx(row["images/s"] / row["estimated images/s"])
        assert row["loss finite"] and 0 <= row["fp16 - fp32 max"] <= 1
        assert row["loader workers needed"] >= 1 and row["peak memory GiB"] is None  # no GPU
        assert row["batch copy ms (pinned)"] is None  # pinning needs CUDA
        estimate = get_recipe(chapter).estimate_cost("full")
        assert row["estimated memory GiB"] <= estimate.peak_memory_gb + 1e-9
    for chapter in CHAPTERS:
        assert chapter in done.stdout  # the printed table
    if not torch.cuda.is_available():
        refused = subprocess.run([sys.executable, script], capture_output=True, text=True)
        assert refused.returncode == 2 and "--device cpu --tiny" in refused.stderr
        assert "no CUDA GPU" in refused.stderr
    slow = subprocess.run(
        [sys.executable, script, "--device", "cpu"], capture_output=True, text=True
    )
    assert slow.returncode == 2 and "needs --tiny" in slow.stderr
