"""Resize a dataset once into a cache at a working resolution.

ISIC images are up to 20 megapixels; decoding
them in every epoch would make the CPU, not the GPU, the bottleneck. :func:`prepare` decodes
each image once, using JPEG *draft mode* (the decoder's own 1/2, 1/4 or 1/8 scaling, which
skips most of the inverse DCT work), resizes it so that its shorter side is ``size`` pixels
(aspect ratio kept), and writes it to a cache with its resized mask. Both cores work in
parallel. A manifest keeps each image's original files and size, because evaluation always
happens against the original mask at the original size.

The cache is keyed by its sources: every resized image and mask carries (in a JPEG comment
and a PNG text chunk) the path, size in bytes and modification time of the original image and
mask it was made from. A later :func:`prepare` reuses a cached pair only when both files carry
the stamps of the sources as they are now, so an image or mask replaced in the dataset is
prepared again, and an interrupted run resumes where it stopped. Pairs that disappeared from
the dataset are dropped from the manifest and their cached files removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from lessons_lib.atomic import (
    WriteError,
    cache_dir,
    cache_fix,
    clean_temp_files,
    ensure_writable,
    write_json,
    write_with,
)
from lessons_lib.data.io import check_match, decode_image, open_image, read_mask, to_rgb
from lessons_lib.data.layouts import available_splits, find_pairs, split_by_seed
from lessons_lib.errors import DataError
from lessons_lib.parallel import parallel_map

MANIFEST = "manifest.json"
JPEG_QUALITY = 95
"""Quality of the cached JPEG images (what the networks are trained and evaluated on)."""
#: Name of the PNG text chunk (and content of the JPEG comment) holding a cached file's sources.
SOURCE_KEY = "lessons_source"
#: Bump when the resizing changes, so that every cache is prepared again.
CACHE_VERSION = 1


def working_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(w, h)`` with the shorter side ``size`` and the aspect ratio kept (never upscaled)."""
    scale = min(1.0, size / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _mask_image(path: Path) -> Image.Image:
    """A mask file as an 8-bit image: 1-bit and 8-bit masks as stored, others binarised.

    20-megapixel masks are common, so 8-bit and 1-bit masks stay in PIL (a NumPy round trip
    would cost more than decoding them); other modes go through
    :func:`~lessons_lib.data.io.read_mask` and its checks, as 0/255.
    """
    im = decode_image(open_image(path), path)
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "L":
        return im
    return Image.fromarray(read_mask(path).astype(np.uint8) * 255)


def shrink_mask(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Area-average an 8-bit mask down to ``size`` and binarise it by the ISIC rule.

    The average of a 0/255 mask is > 128 where more than half of the area is lesion, the same
    mask as binarising first (value > 128) and then averaging; 0/1-valued masks are recognised.

    Returns:
        ``bool (h, w)``.
    """
    w, h = size
    factor = max(1, min(mask.width // w, mask.height // h))
    small = mask.reduce(factor) if factor > 1 else mask
    small = small.resize((w, h), Image.Resampling.BOX) if small.size != (w, h) else small
    arr = np.asarray(small)
    return arr >= 1 if arr.max(initial=0) <= 1 else arr > 128


def load_resized(image_path: Path, mask_path: Path, size: int) -> tuple[Image.Image, np.ndarray]:
    """Decode one pair at working resolution (draft mode for JPEGs).

    Returns:
        ``(image, mask)``: an RGB :class:`PIL.Image.Image` and a ``bool (h, w)`` mask.
    """
    mask = _mask_image(mask_path)
    im = open_image(image_path)
    apply_exif = check_match(im, (mask.height, mask.width), image_path, mask_path)
    w, h = working_size(mask.width, mask.height, size)
    return resize_image(im, image_path, (w, h), apply_exif), shrink_mask(mask, (w, h))


def resize_image(
    im: Image.Image, path: Path | str, size: tuple[int, int], exif_transpose: bool = False
) -> Image.Image:
    """An opened image decoded at working size ``(width, height)``: draft-mode decoding for
    JPEGs, EXIF rotation if asked, RGB, then Lanczos to exactly ``size``. The one way images
    are brought to working size, by :func:`prepare` and by prediction
    (:mod:`lessons_lib.evaluation.predict`)."""
    w, h = size
    if im.format == "JPEG":
        im.draft("RGB", (w, h) if not exif_transpose else (h, w))
    im = decode_image(im, path)
    if exif_transpose:
        im = ImageOps.exif_transpose(im)
    im = to_rgb(im, path)
    return im.resize((w, h), Image.Resampling.LANCZOS) if im.size != (w, h) else im


def _size(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def source_stamp(image_path: str | Path, mask_path: str | Path, size: int) -> str | None:
    """What a cached pair is made from: both sources' path, size and modification time.

    Returns:
        A JSON string, or ``None`` when a source cannot be read (it is then prepared, and the
        reader reports the problem).
    """
    try:
        stamps = [
            [str(p), (st := os.stat(p)).st_size, st.st_mtime_ns] for p in (image_path, mask_path)
        ]
    except OSError:
        return None
    return json.dumps(
        {"version": CACHE_VERSION, "size": size, "image": stamps[0], "mask": stamps[1]}
    )


def _stamp_of(path: str, kind: str) -> str | None:
    """The source stamp a cached file carries (``None`` if absent or unreadable)."""
    try:
        with Image.open(path) as im:
            value = im.info.get(SOURCE_KEY if kind == "png" else "comment")
    except (OSError, ValueError):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def _cached_size(out_image: str, out_mask: str, stamp: str | None) -> tuple[int, int] | None:
    """The size of a cached pair made from the sources as they are now, or ``None``."""
    if stamp is None or _stamp_of(out_image, "jpeg") != stamp:
        return None
    if _stamp_of(out_mask, "png") != stamp:
        return None
    return _size(out_mask)


def _one(job: tuple[str, str, str, str, int]) -> dict:
    image_path, mask_path, out_image, out_mask, size = job
    stamp = source_stamp(image_path, mask_path, size)
    small_size = _cached_size(out_image, out_mask, stamp)
    if small_size is None:  # new, changed, or interrupted half-way: prepare it
        image, mask = load_resized(Path(image_path), Path(mask_path), size)
        comment = stamp or ""
        write_with(
            out_image,
            lambda p: image.save(p, format="JPEG", quality=JPEG_QUALITY, comment=comment),
        )
        info = PngInfo()
        info.add_text(SOURCE_KEY, comment)
        small = Image.fromarray(mask.astype(np.uint8) * 255)
        write_with(out_mask, lambda p: small.save(p, format="PNG", pnginfo=info))
        small_size = small.size
    return {"orig_size": list(_size(mask_path)), "size": list(small_size)}


@dataclass
class PreparedData:
    """A dataset resized by :func:`prepare`.

    Attributes:
        path: The cache folder.
        manifest: Its ``manifest.json`` (dataset, root, size and one entry per image).
    """

    path: Path
    manifest: dict

    def entries(self, split: str | None = None) -> list[dict]:
        """Manifest entries (``id, split, image, mask, orig_image, orig_mask, orig_size``)."""
        rows = self.manifest["entries"]
        rows = [e for e in rows if split is None or e["split"] == split]
        if not rows:
            raise DataError(f"no prepared images in split {split!r}", self.path / MANIFEST)
        return rows

    def pairs(self, split: str | None = None) -> list[tuple[Path, Path]]:
        """Resized ``(image, mask)`` files, for training."""
        return [(self.path / e["image"], self.path / e["mask"]) for e in self.entries(split)]

    def originals(self, split: str | None = None) -> list[tuple[Path, Path]]:
        """The original ``(image, mask)`` files, for evaluation at full size."""
        return [(Path(e["orig_image"]), Path(e["orig_mask"])) for e in self.entries(split)]

    @property
    def identity(self) -> str:
        """Which images these are, for pairing per-image scores across runs.

        A real ISIC dataset is its name (an ISIC id names one image everywhere); synthetic
        data is its generator folder (whose name holds every setting and the seed); a PH2 or
        own-folder dataset adds its folder's name.
        """
        root, dataset = Path(self.manifest["root"]), self.manifest["dataset"]
        if (root / "synth.json").is_file():
            return f"synthetic:{root.name}"
        return dataset if dataset.startswith("isic") else f"{dataset}:{root.name}"

    @classmethod
    def load(cls, path: Path | str) -> PreparedData:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise DataError("not a prepared dataset (no manifest.json)", path, "run prepare()")
        return cls(path, json.loads((path / MANIFEST).read_text()))


def default_out(
    root: Path, dataset: str, size: int, limit: int | None = None, seed: int = 0
) -> Path:
    """``<cache>/prepared/<dataset>-<hash of root>-<size>[-seed<seed>][-first<limit>]``.

    The seed is in the name of a dataset whose split is drawn from it (PH2, ``folder``): its
    images sit in other split folders under another seed, so runs of two seeds, at once or one
    after the other, each keep a cache of their own instead of rewriting one under the other.
    """
    seeded = f"-seed{seed}" if split_by_seed(dataset) else ""
    first = f"-first{limit}" if limit is not None else ""
    return cache_dir() / "prepared" / f"{cache_stem(root, dataset)}-{size}{seeded}{first}"


def cache_stem(root: Path, dataset: str) -> str:
    """``<dataset>-<hash of root>``: how the name of every default cache folder of ``root``
    begins, whatever its size, seed or limit (and in earlier versions of the course)."""
    return f"{dataset}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]}"


def _positive_int(name: str, value: object, unit: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 1, else an error naming ``name``.

    Raises:
        TypeError: not a whole number (``bool`` and ``float`` included).
        ValueError: zero or negative.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{name} must be a whole number of {unit} (an int >= 1), "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(f"{name} must be a whole number of {unit} >= 1, got {value}")
    return int(value)


def _unwritable(err: WriteError, explicit: bool) -> WriteError:
    """``err`` (a folder of the prepared dataset cannot be written) with prepare's fix."""
    if explicit:
        fix = (
            "pass a writable folder with free space as out (--out on the command line), "
            "or leave it out to use the cache folder (LESSONS_CACHE)"
        )
    else:
        fix = f"{cache_fix()}, or pass another folder as out (--out on the command line)"
    reason = err.reason or err.what
    return WriteError(f"cannot write the prepared dataset here ({reason})", err.path, fix, reason)


def _cache_folders(out: Path, splits: tuple[str, ...]) -> list[Path]:
    return [out] + [out / s / kind for s in splits for kind in ("images", "masks")]


def prepare(
    root: Path | str,
    dataset: str,
    size: int,
    out: Path | str | None = None,
    splits: tuple[str, ...] | None = None,
    workers: int = 2,
    seed: int = 0,
    limit: int | None = None,
) -> PreparedData:
    """Resize every pair of a dataset once; reuse what an earlier call already wrote.

    A cached pair is reused only while its original image and mask are unchanged (same path,
    size and modification time); pairs whose sources changed are prepared again, pairs gone
    from the dataset are dropped, and temporary files that a killed run left in the cache are
    removed (see :func:`lessons_lib.atomic.clean_temp_files`).

    Args:
        root: Dataset root, as for :func:`~lessons_lib.data.find_pairs`.
        dataset: Dataset key.
        size: Shorter side of the cached images, in pixels (at least the training size).
        out: Cache folder; default ``<cache>/prepared/<dataset>-<hash of root>-<size>``,
            with ``-seed<seed>`` for a dataset split by seed (:func:`default_out`).
        splits: Which splits to prepare; default every split the layout has.
        workers: Processes decoding in parallel (:func:`lessons_lib.parallel.parallel_map`;
            Ctrl-C stops them cleanly, and the next call resumes).
        seed: Split seed for datasets without an official split.
        limit: Prepare only the first ``limit`` pairs (by id) of each split, into a cache
            folder of their own (a chapter's dry run: the full-size code path on a few images).

    Returns:
        A :class:`PreparedData` whose ``pairs(split)`` feed training and whose
        ``originals(split)`` feed evaluation.

    Raises:
        TypeError, ValueError: ``size`` or ``workers`` is not a whole number >= 1.
        WriteError: the cache folder is read-only or full (a :class:`DataError` naming
            ``LESSONS_CACHE`` and ``out``).
        DataError: the data is missing or unreadable; ``out`` holds another dataset, size,
            or (for a dataset split by seed) another seed's split.
    """
    size = _positive_int("size", size, "pixels")
    workers = _positive_int("workers", workers, "processes")
    if limit is not None:
        limit = _positive_int("limit", limit, "pairs per split")
    root = Path(root).expanduser().resolve()
    explicit = out is not None
    try:
        out = Path(out).expanduser() if explicit else default_out(root, dataset, size, limit, seed)
        ensure_writable(out)
    except WriteError as err:
        raise _unwritable(err, explicit) from None
    old: dict | None = None
    kept: list[dict] = []  # splits prepared earlier and not asked for now stay in the manifest
    splits = tuple(splits or available_splits(root, dataset))
    if (out / MANIFEST).is_file():
        old = PreparedData.load(out).manifest
        if (old["dataset"], old["root"], old["size"]) != (dataset, str(root), size):
            raise DataError(
                f"already holds {old['dataset']} from {old['root']} at size {old['size']}",
                out,
                "choose another output folder, or delete this one",
            )
        if split_by_seed(dataset) and old.get("seed", 0) != seed:
            # preparing it again would move images between its split folders under the feet
            # of a run that reads them
            raise DataError(
                f"already holds the split drawn with seed {old.get('seed', 0)}, not {seed}",
                out,
                "choose another output folder for this seed, or delete this one",
            )
        kept = [e for e in old["entries"] if e["split"] not in splits]
    jobs, entries = [], []
    for split in splits:
        for image, mask in find_pairs(root, dataset, split, seed=seed)[:limit]:
            rel_i, rel_m = f"{split}/images/{image.stem}.jpg", f"{split}/masks/{image.stem}.png"
            jobs.append((str(image), str(mask), str(out / rel_i), str(out / rel_m), size))
            entries.append({"id": image.stem, "split": split, "image": rel_i, "mask": rel_m})
            entries[-1].update(orig_image=str(image), orig_mask=str(mask))
    if not jobs:
        raise DataError(f"no {dataset} images found", root, "check root and dataset")
    for folder in _cache_folders(out, splits):  # temporary files of killed runs (atomic
        clean_temp_files(folder)  # writes clean only the folders they write to)
    try:
        # on Ctrl-C or an error, jobs not started are cancelled and the workers finish the few
        # images they hold (every write is atomic); chunks of 2 images: Ctrl-C waits on little
        results = parallel_map(_one, jobs, workers, max_chunk=2)
        for entry, result in zip(entries, results, strict=True):
            entry.update(result)
        manifest = {"dataset": dataset, "root": str(root), "size": size, "seed": seed}
        if limit is not None:
            manifest["limit"] = limit
        manifest["entries"] = kept + entries
        write_json(out / MANIFEST, manifest)
    except WriteError as err:
        if err.path is None or not err.path.is_relative_to(out):
            raise  # e.g. a split file in the cache: its own message names LESSONS_CACHE
        raise _unwritable(err, explicit) from None
    if old is not None:  # drop the cached files of pairs that are gone from the dataset
        now = {e[k] for e in entries for k in ("image", "mask")}
        for e in old["entries"]:
            for rel in (e["image"], e["mask"]):
                if e["split"] in splits and rel not in now:
                    (out / rel).unlink(missing_ok=True)
    return PreparedData(out, manifest)
