"""External validation: a trained run scored on every image of a dataset it never trained on.

A network that learned one archive's images (its dermoscopes, clinics, years and annotators)
can score less on another's, and a test split drawn from the training archive cannot show it.
The literature's usual cross-dataset test trains on ISIC and scores on PH2 (200 dermoscopic
images of one hospital's dermoscope, with its own annotators): ``-p external_dataset ph2 -p
external_data_dir <PH2 folder>`` in any chapter.

:func:`evaluate_external` scores a run's final model(s) the way the chapter scores its own
test split, so the two numbers can stand side by side: every image takes the chapter's own
prediction path, read from the run's ``predictor.json`` (preparation, network input, activation,
ensemble average, resize to the original size and post-processing:
:mod:`lessons_lib.evaluation.predict`), and the one scoring loop of the course compares the mask
with the original mask at the original size using the challenge metrics
(:func:`~lessons_lib.evaluation.evaluate.score_at_original`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lessons_lib.data.layouts import LAYOUTS, find_pairs
from lessons_lib.errors import DataError
from lessons_lib.evaluation.evaluate import score_at_original
from lessons_lib.evaluation.predict import predict_probs, read_predictor, spec_to_original

__all__ = ["external_entries", "evaluate_external", "external_title"]


def external_title(dataset: str) -> str:
    """A dataset's name in words (``"PH2"``, ``"ISIC 2017 Task 1"``...)."""
    if dataset in LAYOUTS:
        return LAYOUTS[dataset].title
    return {"ph2": "PH2", "folder": "own folder"}.get(dataset, dataset)


def external_entries(dataset: str, data_dir: str | Path) -> list[dict[str, Any]]:
    """Every image of a dataset, all of its splits, as entries ``{id, orig_image, orig_mask}``
    sorted by id.

    Raises:
        DataError: the dataset's layout is not found, a mask is missing, or two images share
            an id (named).
    """
    entries, seen = [], {}
    for image, mask in find_pairs(data_dir, dataset, split=None):
        other = seen.setdefault(image.stem, image)
        if other != image:
            raise DataError(
                f"two images have the id {image.stem!r} ({other} and {image}): per-image "
                "scores could not tell them apart",
                Path(data_dir),
                "keep one image per file name stem",
            )
        entries.append({"id": image.stem, "orig_image": str(image), "orig_mask": str(mask)})
    return entries


def evaluate_external(
    run_dir: str | Path,
    dataset: str,
    data_dir: str | Path,
    save_dir: str | Path | None = None,
    spec: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    """Score a run's predictor on every image of another dataset, at original size.

    Args:
        run_dir: The chapter's run folder: its ``predictor.json`` and weights
            (``run.save_predictor`` writes them).
        dataset: The external dataset's key (``ph2``, ``isic2018``, ``folder``...).
        data_dir: Its unzipped folder.
        save_dir: If given, the predicted masks are written there (``<id>_segmentation.png``).
        spec: The run's predictor spec (default: read from ``run_dir``).
        batch_size: Images per forward pass.
        device: Default ``cuda`` if available, else ``cpu``.

    Returns:
        ``(per_image, summary, small)``, as :func:`lessons_lib.evaluation.evaluate` returns.

    Raises:
        DataError: no predictor in ``run_dir``, or a dataset that cannot be read (named).
    """
    spec = read_predictor(run_dir) if spec is None else spec
    entries = external_entries(dataset, data_dir)
    images = [Path(e["orig_image"]) for e in entries]
    probs = (prob for _, prob, _ in predict_probs(run_dir, images, spec, batch_size, device))
    return score_at_original(entries, probs, spec_to_original(spec), save_dir)
