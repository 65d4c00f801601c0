"""A synthetic dataset written in the ISIC 2017 Task 1 layout, so the same loaders read it
as the real data: :func:`make_dataset` (parallel, atomic, re-run only when its settings change).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lessons_lib.atomic import write_bytes, write_json, write_text
from lessons_lib.errors import DataError
from lessons_lib.parallel import parallel_map
from lessons_lib.synth.image import MIN_SIDE, SynthConfig, generate

__all__ = ["FORMAT_VERSION", "SPLIT_NAMES", "default_count", "make_dataset"]

SPLIT_NAMES = ("Training", "Validation", "Test_v2")
FORMAT_VERSION = 1
JPEG_QUALITY = 95
_OURS = re.compile(r"^\.?ISIC_\d{7}(\.jpg|_superpixels\.png|_segmentation\.png)")
Job = tuple[str, str, str, int, int, int, SynthConfig]


def default_count(n: int) -> int:
    """Validation and test images of a dataset with ``n`` training images, unless given."""
    return max(2, n // 4)


def _folders(split: str) -> tuple[str, str]:
    return f"ISIC-2017_{split}_Data", f"ISIC-2017_{split}_Part1_GroundTruth"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _superpixels(seed: int, height: int, width: int) -> np.ndarray:
    """A plausible superpixel map: a brick-like grid, index encoded as R + 256 G + 65536 B."""
    rng = np.random.default_rng([seed, 99])
    cell = max(6, width // 24)
    rows = np.arange(height) // cell
    shift = rng.integers(0, cell, rows[-1] + 1)[rows]
    cols = (np.arange(width)[None, :] + shift[:, None]) // cell
    index = (rows[:, None] * (width // cell + 2) + cols).astype("<u4")
    return index.view(np.uint8).reshape(height, width, 4)[..., :3].copy()


def _write_one(job: Job) -> None:
    """Generate one image and write its JPEG, superpixel map and mask atomically."""
    root, split, image_id, seed, width, height, config = job
    image, mask = generate(seed, width, height, config)
    data_dir, gt_dir = (Path(root) / f for f in _folders(split))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    write_bytes(data_dir / f"{image_id}.jpg", buf.getvalue())
    write_bytes(data_dir / f"{image_id}_superpixels.png", _png(_superpixels(seed, height, width)))
    write_bytes(gt_dir / f"{image_id}_segmentation.png", _png(mask))


def _plan(
    n: dict[str, int], size: int, seed: int, jitter: float
) -> dict[str, list[dict[str, Any]]]:
    """Per split, the id, generator seed, size and synthetic metadata of every image."""
    plan: dict[str, list[dict[str, Any]]] = {}
    index = 0
    for split in SPLIT_NAMES:
        plan[split] = []
        for _ in range(n[split]):
            words = np.random.SeedSequence([seed, index]).generate_state(4, np.uint32)
            seed_i, u_width, u_age, u_sex = (int(w) for w in words)
            width = round(size * (1 + jitter * (2 * u_width / 2**32 - 1)))
            age = "unknown" if u_age % 20 == 0 else str(15 + 5 * (u_age % 15))
            sex = ("male", "female", "unknown")[(u_sex % 41) // 20]
            plan[split].append(
                {
                    "id": f"ISIC_{index:07d}",
                    "seed": seed_i,
                    "width": width,
                    "height": round(width * 3 / 4),
                    "age_approximate": age,
                    "sex": sex,
                }
            )
            index += 1
    return plan


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError("exists and is not a folder", out, "choose another --out folder")
    if out.is_dir():
        allowed = {"synth.json"} | {f for s in SPLIT_NAMES for f in _folders(s)}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed)
        if foreign:
            raise DataError(
                f"folder holds files that are not a synthetic dataset ({foreign[:3]} ...)",
                out,
                "write the synthetic data to a new or empty folder",
            )


def _remove_stale(out: Path, plan: dict[str, list[dict[str, Any]]]) -> None:
    """Delete generator files (and leftover temp files) whose id is not in ``plan``."""
    for split in SPLIT_NAMES:
        keep = {row["id"] for row in plan[split]}
        for folder in _folders(split):
            if not (out / folder).is_dir():
                continue
            for path in (out / folder).iterdir():
                match = _OURS.match(path.name)
                if match and (path.name.startswith(".") or path.name[:12] not in keep):
                    path.unlink()


def make_dataset(
    out_dir: Path | str,
    n: int = 40,
    size: int = 256,
    seed: int = 0,
    config: SynthConfig | None = None,
    n_valid: int | None = None,
    n_test: int | None = None,
    size_jitter: float = 0.2,
    workers: int = 1,
) -> Path:
    """Write a synthetic dataset in the ISIC 2017 Task 1 layout, exactly as ISIC ships it.

    Layout below ``out_dir``: ``ISIC-2017_{Training,Validation,Test_v2}_Data/`` with
    ``ISIC_xxxxxxx.jpg`` (JPEG quality 95), ``ISIC_xxxxxxx_superpixels.png`` and
    ``ISIC-2017_<Split>_Data_metadata.csv`` (image_id, age_approximate, sex), and
    ``ISIC-2017_<Split>_Part1_GroundTruth/ISIC_xxxxxxx_segmentation.png`` (0/255). Image ids
    are unique across splits; widths vary by ``+-size_jitter`` around ``size`` (4:3 aspect).
    Every file is written atomically and ``synth.json`` (all parameters, ids and per-image
    seeds) is written last. If ``synth.json`` already matches and every file exists, nothing
    is rewritten. The same arguments always give identical files, whatever ``workers``.

    Args:
        out_dir: Dataset root (created; must be empty or hold an earlier synthetic dataset).
        n: Number of training images.
        size: Mean image width in pixels.
        seed: Dataset seed.
        config: Nuisances to draw (default ``SynthConfig()``).
        n_valid: Validation images; default ``max(2, n // 4)``.
        n_test: Test images; default ``max(2, n // 4)``.
        size_jitter: Relative spread of the widths, in ``[0, 1)``.
        workers: Processes to use (:func:`lessons_lib.parallel.parallel_map`, spawned; Ctrl-C
            stops them cleanly).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: On bad arguments or an ``out_dir`` holding other files.
    """
    cfg = config if config is not None else SynthConfig()
    counts = {"Training": n, "Validation": n_valid, "Test_v2": n_test}
    counts = {k: default_count(n) if v is None else v for k, v in counts.items()}
    for name, value in [*counts.items(), ("seed", seed)]:
        if not isinstance(value, int) or value < (1 if name == "Training" else 0):
            raise DataError(f"{name} = {value!r} is not a valid count / seed", fix="use n>=1")
    if sum(counts.values()) >= 10**7:
        raise DataError("more than 9,999,999 images do not fit 7-digit ISIC ids", fix="lower n")
    if not 0 <= size_jitter < 1 or round(size * (1 - size_jitter)) < MIN_SIDE:
        raise DataError(
            f"size={size}, size_jitter={size_jitter} gives widths under {MIN_SIDE} px",
            fix=f"use 0 <= size_jitter < 1 and size*(1-size_jitter) >= {MIN_SIDE}",
        )
    out = Path(out_dir)
    _check_out_dir(out)
    plan = _plan(counts, size, seed, size_jitter)
    record = {
        "generator": "lessons_lib.synth",
        "format_version": FORMAT_VERSION,
        "layout": "ISIC 2017 Task 1",
        "n": n,
        "n_valid": counts["Validation"],
        "n_test": counts["Test_v2"],
        "size": size,
        "size_jitter": size_jitter,
        "seed": seed,
        "jpeg_quality": JPEG_QUALITY,
        "config": cfg.to_dict(),
        "ids": {split: [row["id"] for row in rows] for split, rows in plan.items()},
        "images": plan,
    }
    record = json.loads(json.dumps(record))
    if _up_to_date(out, record):
        return out
    (out / "synth.json").unlink(missing_ok=True)
    jobs: list[Job] = [
        (str(out), split, r["id"], r["seed"], r["width"], r["height"], cfg)
        for split, rows in plan.items()
        for r in rows
    ]
    for split in SPLIT_NAMES:  # a split of 0 images gets no folders (an empty split is an error)
        for folder in _folders(split) if counts[split] else ():
            (out / folder).mkdir(parents=True, exist_ok=True)
    # spawned workers: forking is unsafe once a process runs threads (a notebook with PyTorch)
    parallel_map(_write_one, jobs, workers, max_chunk=4, context="spawn")
    for split, rows in plan.items():
        if not rows:
            continue
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["image_id", "age_approximate", "sex"])
        writer.writerows([r["id"], r["age_approximate"], r["sex"]] for r in rows)
        data_dir = out / _folders(split)[0]
        write_text(data_dir / f"ISIC-2017_{split}_Data_metadata.csv", text.getvalue())
    _remove_stale(out, plan)
    write_json(out / "synth.json", record)
    return out


def _up_to_date(out: Path, record: dict[str, Any]) -> bool:
    """True when ``out/synth.json`` equals ``record`` and every listed file exists."""
    try:
        if json.loads((out / "synth.json").read_text()) != record:
            return False
    except (OSError, ValueError):
        return False
    for split, rows in record["images"].items():
        data_dir, gt_dir = (out / f for f in _folders(split))
        for r in rows:
            names = (f"{r['id']}.jpg", f"{r['id']}_superpixels.png")
            if not all((data_dir / name).is_file() for name in names):
                return False
            if not (gt_dir / f"{r['id']}_segmentation.png").is_file():
                return False
    return True
