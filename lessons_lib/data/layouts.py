"""Dataset layouts exactly as their publishers distribute them, and :func:`find_pairs`.

Each layout maps a split (``train``,
``valid``, ``test``) to an image folder and a ground-truth folder below the dataset root;
PH2 and a user's own ``folder`` data have no official split and get a seeded one
(:mod:`lessons_lib.data.split`).
"""

from __future__ import annotations

import os
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
PUBLISHED_SPLITS: dict[str, dict[str, int]] = {
    "isic2016": {"train": 900, "test": 379},
    "isic2017": {"train": 2000, "valid": 150, "test": 600},
    "isic2018": {"train": 2594, "valid": 100, "test": 1000},
    "ph2": {"all": 200},
}
"""The published number of images (each with one mask) per dataset and split (PH2: ``"all"``,
no official split): the one table that downloads check against and recipes count with."""

DATASETS = ("isic2016", "isic2017", "isic2018", "ph2", "folder", "synthetic")


def needs_data_dir(dataset: str) -> DataError:
    """The error for a real ``dataset`` asked for without its folder: how to get it (the
    download command, for a dataset the course downloads) and how to pass it."""
    if dataset in PUBLISHED_SPLITS:
        terms = " --accept-terms" if dataset == "ph2" else ""
        get = (
            f"download it once (python -m lessons_lib data download {dataset}{terms} --to "
            f"~/data/{dataset}), then pass data_dir='~/data/{dataset}' (papermill: -p data_dir "
            f"~/data/{dataset})"
        )
    else:
        get = "pass data_dir=<the folder with images/ and masks/>"
    return DataError(
        f"dataset={dataset!r} needs data_dir",
        fix=f"{get} (README: 'From download to submission'); or use dataset='synthetic'",
    )


_IGNORED = re.compile(r"(_superpixels|_segmentation|_Segmentation)\.png$|^\.|^ATTRIBUTION|^LICENSE")


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted, without superpixel maps, metadata or hidden files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _IGNORED.search(p.name)
    )


def broken_link(path: Path) -> DataError | None:
    """A :class:`DataError` if ``path`` is a symbolic link whose target does not exist."""
    if not (path.is_symlink() and not path.exists()):
        return None
    return DataError(
        f"broken symbolic link: it points to {os.readlink(path)}, which does not exist",
        path,
        "restore the file it points to (a moved or unmounted data folder?), or remove the link",
    )


def _broken_images(folder: Path) -> list[DataError]:
    """Broken symbolic links in ``folder`` named like images (:func:`list_images` skips them)."""
    links = (
        p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and not _IGNORED.search(p.name)
    )
    return [err for err in map(broken_link, links) if err is not None]


def check_root(root: Path) -> None:
    """Raise a :class:`DataError` unless ``root`` is an existing folder.

    Raises:
        DataError: ``root`` does not exist, or is a file (an archive not yet unzipped, say).
    """
    if root.is_dir():
        return
    if root.is_file():
        archive = root.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".rar", ".7z")
        fix = (
            f"unzip it first (e.g. `unzip {root.name} -d {root.stem}`) and pass that folder"
            if archive
            else "pass the folder that holds the dataset, not a file in it"
        )
        raise DataError("dataset root is a file, not a folder", root, fix)
    link = broken_link(root)
    if link is not None:
        raise link
    raise DataError(
        "dataset root does not exist", root, "download the data, or fix the path you passed"
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
    hint = None
    if found and found != dataset:
        hint = f"this folder looks like dataset={found!r}; pass that instead"
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
    broken = _broken_images(img_dir)
    for err in broken:
        _report(problems, err)
    images = list_images(img_dir)
    pairs = []
    for image in images:
        candidates = [mask_dir / f"{image.stem}{s}" for s in suffixes]
        mask = next((m for m in candidates if m.is_file()), None)
        if mask is not None:
            pairs.append((image, mask))
            continue
        link = next((err for err in map(broken_link, candidates) if err is not None), None)
        if link is not None:
            _report(problems, link)
            continue
        looked = ", ".join(m.name for m in candidates)
        fix = "restore the missing mask, or remove the image from the dataset"
        _report(problems, DataError(f"no mask ({looked}) in {mask_dir}", image, fix))
    if not images and not broken:
        fix = "check that the archive was fully unzipped here"
        _report(problems, DataError("no images found", img_dir, fix))
    if problems is not None:  # a whole-dataset check also lists masks without an image
        stems = {p.stem for p in images} | {e.path.stem for e in broken if e.path is not None}
        for mask in sorted(mask_dir.iterdir()):
            stem = next((mask.name[: -len(s)] for s in suffixes if mask.name.endswith(s)), None)
            if stem is not None and stem not in stems:
                fix = "restore its image, or remove the mask"
                problems.append(DataError("mask has no image", mask, fix))
    return pairs


def _official(root: Path, layout: Layout, split: str | None, problems: Problems) -> list[Pair]:
    if split is not None and split not in layout.folders:
        raise DataError(
            f"{layout.title} has no {split!r} split; it has {sorted(layout.folders)}",
            root,
            "use one of those, or carve a split out of 'train' with lessons_lib.data.split_pairs",
        )
    found = {s: _locate(root, layout.folders[s][0]) for s in layout.folders}
    present = [s for s, base in found.items() if base is not None]
    if not present:
        names = " or ".join(layout.folders[s][0] for s in ([split] if split else layout.folders))
        raise _no_layout(root, layout.name, f"a folder {names} (download: {layout.url})")
    if split is not None and found[split] is None:
        raise DataError(
            f"the {split!r} split of {layout.title} is absent: no folder "
            f"{layout.folders[split][0]} here (splits present: {', '.join(present)})",
            root,
            f"download and unzip that split ({layout.url}) here, "
            f"or ask for a split that is present ({', '.join(present)})",
        )
    pairs: list[Pair] = []
    for s in [split] if split else present:
        img, gt = layout.folders[s]
        pairs += _pairs_in(found[s] / img, found[s] / gt, layout.mask_suffix, problems)
    if problems is not None and split is None:  # ground truth whose images were never unzipped
        for s in layout.folders:
            gt_base = None if found[s] else _locate(root, layout.folders[s][1])
            if gt_base is not None:
                problems.append(
                    DataError(
                        f"ground truth of the {s!r} split without its images "
                        f"({layout.folders[s][0]} is missing)",
                        gt_base / layout.folders[s][1],
                        f"download and unzip the {s!r} images ({layout.url}) beside it, "
                        "or remove this folder",
                    )
                )
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
            err = broken_link(p) or DataError(
                "PH2 case file is missing", p, "re-extract the archive"
            )
            _report(problems, err)
        if not missing:
            pairs.append((image, mask))
    if not cases:
        fix = "re-extract the PH2 archive"
        _report(problems, DataError("no IMDxxx cases found", base / PH2_DIR, fix))
    return pairs


def _folder_all(root: Path, problems: Problems) -> list[Pair]:
    if not (root / "images").is_dir():
        raise _no_layout(root, "folder", "sub-folders images/ and masks/")
    return _pairs_in(root / "images", root / "masks", ("_segmentation.png", ".png"), problems)


def split_by_seed(dataset: str) -> bool:
    """Whether ``dataset`` has no official split (PH2, ``folder``), so that its split is drawn
    from a seed (:func:`lessons_lib.data.split.seeded_split`) and changes with it."""
    return dataset not in LAYOUTS


def available_splits(root: Path | str, dataset: str) -> list[str]:
    """The splits of ``dataset`` present under ``root`` (all three for seeded splits).

    Only the folders are looked at: no file is read and no split is drawn.

    Raises:
        DataError: the root is missing or a file, or no split of that layout is there.
    """
    root = Path(root).expanduser()
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")
    check_root(root)
    if dataset == "ph2":
        if _locate(root, PH2_DIR) is None:
            raise _no_layout(root, "ph2", f"a folder '{PH2_DIR}' with IMDxxx case folders")
        return list(SPLITS)
    if dataset == "folder":
        if not (root / "images").is_dir():
            raise _no_layout(root, "folder", "sub-folders images/ and masks/")
        return list(SPLITS)
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
            ``folder`` data get a seeded split, drawn on first use and saved beside the data
            (or in the cache) so reruns agree (:func:`lessons_lib.data.split.seeded_split`);
            with ``split=None`` no split is drawn or saved.
        seed: Seed of that split.
        problems: If a list, file-level problems (missing masks, orphan masks, broken
            links, empty folders) are appended to it instead of raised, as ``data check``
            does.

    Returns:
        ``[(image_path, mask_path), ...]`` sorted by image id.

    Raises:
        DataError: unknown dataset or split, a missing root (or a file), a missing layout or
            split, a missing mask, a broken link, an empty split (saying how many images a
            seeded split needs).
    """
    from lessons_lib.data.split import min_images, seeded_split, split_file

    root = Path(root).expanduser()
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    check_root(root)
    if not split_by_seed(dataset):
        pairs = _official(root, LAYOUTS[dataset], split, problems)
    else:
        pairs = _ph2_all(root, problems) if dataset == "ph2" else _folder_all(root, problems)
        if split is not None and pairs:
            everything = pairs
            pairs = seeded_split(everything, root, dataset, seed)[split]
            need = min_images(split)
            if not pairs and len(everything) < need:
                raise DataError(
                    f"the {split!r} split is empty: the dataset has {len(everything)} "
                    f"image/mask pair(s), and a seeded 70/10/20 split needs at least {need} "
                    f"for its {split!r} part to hold one",
                    root,
                    f"add images (at least {need} in all)"
                    + (
                        ", or hold validation images out of 'train' with "
                        "lessons_lib.data.split_pairs"
                        if split == "valid"
                        else ""
                    ),
                )
            if not pairs:
                path = split_file(root, dataset, seed)
                raise DataError(
                    f"the {split!r} split is empty: every image the saved split put there "
                    "has been removed",
                    path,
                    "delete this file to draw a new split (results from the old split are "
                    "then not comparable with new ones)",
                )
    if not pairs and problems is None:
        raise DataError("no images found", root, "check that the archive was fully unzipped")
    return sorted(pairs, key=lambda p: p[0].stem)
