"""Dataset layouts exactly as their publishers distribute them, and :func:`find_pairs`.

Each layout maps a split (``train``,
``valid``, ``test``) to an image folder and a ground-truth folder below the dataset root;
PH2 and a user's own ``folder`` data have no official split and get a seeded one
(:mod:`lessons_lib.data.split`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lessons_lib.data.io import IMAGE_SUFFIXES
from lessons_lib.errors import DataError

SPLITS = ("train", "valid", "test")
Pair = tuple[Path, Path]


@dataclass(frozen=True)
class Layout:
    """Where one dataset keeps its images and masks.

    Args:
        name: Dataset key, as passed to :func:`find_pairs`.
        title: Human name used in messages.
        folders: ``split -> (image folder, mask folder)`` relative to the root.
        mask_suffix: What turns an image stem into its mask's file name.
        url: Where to download the data (named in errors).
    """

    name: str
    title: str
    folders: dict[str, tuple[str, str]]
    mask_suffix: str
    url: str


def _isic(name: str, title: str, img: str, gt: str, splits: dict[str, str], suffix: str, url: str):
    folders = {s: (img.format(v), gt.format(v)) for s, v in splits.items()}
    return Layout(name, title, folders, suffix, url)


LAYOUTS: dict[str, Layout] = {
    "isic2016": _isic(
        "isic2016",
        "ISIC 2016 (ISBI 2016) Part 1",
        "ISBI2016_ISIC_Part1_{}_Data",
        "ISBI2016_ISIC_Part1_{}_GroundTruth",
        {"train": "Training", "test": "Test"},
        "_Segmentation.png",
        "https://challenge.isic-archive.com/data/#2016",
    ),
    "isic2017": _isic(
        "isic2017",
        "ISIC 2017 Task 1",
        "ISIC-2017_{}_Data",
        "ISIC-2017_{}_Part1_GroundTruth",
        {"train": "Training", "valid": "Validation", "test": "Test_v2"},
        "_segmentation.png",
        "https://challenge.isic-archive.com/data/#2017",
    ),
    "isic2018": Layout(
        "isic2018",
        "ISIC 2018 Task 1",
        {
            s: (f"ISIC2018_Task1-2_{v}_Input", f"ISIC2018_Task1_{v}_GroundTruth")
            for s, v in {"train": "Training", "valid": "Validation", "test": "Test"}.items()
        },
        "_segmentation.png",
        "https://challenge.isic-archive.com/data/#2018",
    ),
}
LAYOUTS["synthetic"] = Layout(
    "synthetic",
    "synthetic dermoscopy (ISIC 2017 layout)",
    LAYOUTS["isic2017"].folders,
    "_segmentation.png",
    "`python -m lessons_lib data synth --out DIR`",
)
PH2_DIR = "PH2 Dataset images"
DATASETS = ("isic2016", "isic2017", "isic2018", "ph2", "folder", "synthetic")
_IGNORED = re.compile(r"(_superpixels|_segmentation|_Segmentation)\.png$|^\.|^ATTRIBUTION|^LICENSE")


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted, without superpixel maps, metadata or hidden files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _IGNORED.search(p.name)
    )


def _locate(root: Path, marker: str) -> Path | None:
    """Return ``root`` or the one sub-folder of it that contains ``marker``."""
    if (root / marker).exists():
        return root
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / marker).exists():
            return child
    return None


def detect_dataset(root: Path | str) -> str | None:
    """Guess which known layout ``root`` holds (``None`` if none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    for name, layout in LAYOUTS.items():
        if name != "synthetic" and any(_locate(root, f[0]) for f in layout.folders.values()):
            return "synthetic" if (root / "synth.json").exists() else name
    if _locate(root, PH2_DIR):
        return "ph2"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    return None


def _no_layout(root: Path, dataset: str, expected: str) -> DataError:
    found = detect_dataset(root)
    hint = f"this folder looks like dataset={found!r}; pass that instead" if found else None
    return DataError(
        f"no {dataset} layout here: expected {expected}",
        root,
        hint or "point `root` at the unzipped dataset folder (see README, 'Data')",
    )


Problems = list[DataError] | None


def _report(problems: Problems, err: DataError) -> None:
    """Raise ``err``, or collect it when a whole-dataset check is running."""
    if problems is None:
        raise err
    problems.append(err)


def _pairs_in(
    img_dir: Path, mask_dir: Path, suffix: str | tuple[str, ...], problems: Problems = None
) -> list[Pair]:
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    if not mask_dir.is_dir():
        fix = "download and unzip the ground-truth archive next to the image folder"
        _report(problems, DataError("ground-truth folder is missing", mask_dir, fix))
        return []
    pairs = []
    for image in list_images(img_dir):
        for s in suffixes:
            mask = mask_dir / f"{image.stem}{s}"
            if mask.is_file():
                pairs.append((image, mask))
                break
        else:
            looked = ", ".join(image.stem + s for s in suffixes)
            fix = "restore the missing mask, or remove the image from the dataset"
            _report(problems, DataError(f"no mask ({looked}) in {mask_dir}", image, fix))
    if not pairs and problems is None:
        fix = "check that the archive was fully unzipped here"
        raise DataError("no images found", img_dir, fix)
    if problems is not None:
        stems = {p.stem for p in list_images(img_dir)}
        if not stems:
            fix = "check that the archive was fully unzipped here"
            problems.append(DataError("no images found", img_dir, fix))
        for mask in sorted(mask_dir.iterdir()):
            stem = next((mask.name[: -len(s)] for s in suffixes if mask.name.endswith(s)), None)
            if stem is not None and stem not in stems:
                problems.append(DataError("mask has no image", mask, "remove it or restore it"))
    return pairs


def _official(root: Path, layout: Layout, split: str | None, problems: Problems) -> list[Pair]:
    if split is not None and split not in layout.folders:
        raise DataError(
            f"{layout.title} has no {split!r} split; it has {sorted(layout.folders)}",
            root,
            "use one of those, or carve a split out of 'train' with lessons_lib.data.split_pairs",
        )
    wanted = [split] if split else list(layout.folders)
    found = [(s, _locate(root, layout.folders[s][0])) for s in wanted]
    present = [(s, base) for s, base in found if base is not None]
    if not present or (split is not None and found[0][1] is None):
        names = " or ".join(layout.folders[s][0] for s in wanted)
        raise _no_layout(root, layout.name, f"a folder {names} (download: {layout.url})")
    pairs: list[Pair] = []
    for s, base in present:
        img, gt = layout.folders[s]
        pairs += _pairs_in(base / img, base / gt, layout.mask_suffix, problems)
    return pairs


def _ph2_all(root: Path, problems: Problems) -> list[Pair]:
    base = _locate(root, PH2_DIR)
    if base is None:
        raise _no_layout(root, "ph2", f"a folder '{PH2_DIR}' with IMDxxx case folders")
    pairs = []
    cases = sorted(p for p in (base / PH2_DIR).iterdir() if p.is_dir() and p.name.startswith("IMD"))
    for case in cases:
        image = case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp"
        mask = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
        missing = [p for p in (image, mask) if not p.is_file()]
        for p in missing:
            _report(problems, DataError("PH2 case file is missing", p, "re-extract the archive"))
        if not missing:
            pairs.append((image, mask))
    if not pairs:
        raise DataError("no IMDxxx cases found", base / PH2_DIR, "re-extract the PH2 archive")
    return pairs


def _folder_all(root: Path, problems: Problems) -> list[Pair]:
    if not (root / "images").is_dir():
        raise _no_layout(root, "folder", "sub-folders images/ and masks/")
    return _pairs_in(root / "images", root / "masks", ("_segmentation.png", ".png"), problems)


def available_splits(root: Path | str, dataset: str) -> list[str]:
    """The splits of ``dataset`` present under ``root`` (all three for seeded splits).

    Raises:
        DataError: no split of that layout is there.
    """
    root = Path(root).expanduser()
    if dataset not in LAYOUTS:
        find_pairs(root, dataset)  # raises if the layout is missing
        return list(SPLITS)
    if not root.is_dir():
        raise DataError("dataset root does not exist", root, "fix the path you passed")
    layout = LAYOUTS[dataset]
    found = [s for s, (img, _) in layout.folders.items() if _locate(root, img)]
    if not found:
        names = ", ".join(f[0] for f in layout.folders.values())
        raise _no_layout(root, dataset, f"one of the folders {names} (download: {layout.url})")
    return found


def find_pairs(
    root: Path | str,
    dataset: str,
    split: str | None = None,
    seed: int = 0,
    problems: Problems = None,
) -> list[Pair]:
    """List a dataset's ``(image, mask)`` files, sorted by image id.

    Args:
        root: The unzipped dataset folder (or the folder containing it).
        dataset: One of ``isic2016, isic2017, isic2018, ph2, folder, synthetic``.
        split: ``train``, ``valid`` or ``test``; ``None`` for every image. PH2 and
            ``folder`` data get a seeded split saved beside the data (or in the cache),
            so reruns agree (:func:`lessons_lib.data.split.seeded_split`).
        seed: Seed of that split.
        problems: If a list, file-level problems (missing masks, orphan masks, empty
            folders) are appended to it instead of raised, as ``data check`` does.

    Returns:
        ``[(image_path, mask_path), ...]`` sorted by image id.

    Raises:
        DataError: unknown dataset or split, missing root or layout, a missing mask, an
            empty split.
    """
    from lessons_lib.data.split import seeded_split

    root = Path(root).expanduser()
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(
            "dataset root does not exist", root, "download the data, or fix the path you passed"
        )
    if dataset in LAYOUTS:
        pairs = _official(root, LAYOUTS[dataset], split, problems)
    else:
        pairs = _ph2_all(root, problems) if dataset == "ph2" else _folder_all(root, problems)
        if split is not None:
            pairs = seeded_split(pairs, root, dataset, seed)[split]
            if not pairs:
                raise DataError(f"the {split!r} split is empty", root, "add images")
    return sorted(pairs, key=lambda p: p[0].stem)
