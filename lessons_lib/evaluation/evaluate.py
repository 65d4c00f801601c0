"""Evaluate a trained Learner the way the challenges do: at each image's original size.

Predict the network's foreground probability at its input size, bring it back to the
image's original size with the paper's interpolation, post-process, and score against the
original mask with :mod:`lessons_lib.metrics`.

Ensembles: :func:`evaluate` also takes a sequence of Learners and averages their foreground
probabilities (:func:`~lessons_lib.evaluation.ensemble.average_probs`) before resizing and
post-processing. ``postprocess_at="model"`` post-processes at the network's
input size and brings the binary mask back to the original size instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from lessons_lib.atomic import write_with
from lessons_lib.data.io import read_mask
from lessons_lib.data.prepare import PreparedData
from lessons_lib.evaluation.ensemble import average_probs
from lessons_lib.losses.base import foreground
from lessons_lib.metrics import SegmentationScorer

RESIZE_MODES = ("nearest", "bilinear", "bicubic")
POSTPROCESS_AT = ("original", "model")


def to_size(prob: np.ndarray | torch.Tensor, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a probability map to ``size`` = ``(width, height)``.

    Args:
        prob: ``(h, w)`` probabilities.
        size: Original ``(width, height)``.
        mode: ``nearest`` (paper 002), ``bilinear`` or ``bicubic`` (paper 000).

    Returns:
        ``float32 (height, width)`` in [0, 1].
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    t = torch.as_tensor(prob, dtype=torch.float32)[None, None]
    w, h = size
    kw = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(t, size=(h, w), mode=mode, **kw)[0, 0]
    return out.clamp_(0, 1).numpy()


def mask_at_original(
    prob: np.ndarray,
    size: tuple[int, int],
    resize: str = "nearest",
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    postprocess_at: str = "original",
    threshold: float = 0.5,
) -> np.ndarray:
    """A probability map at input size as a mask at the original size, the one rule of
    :func:`evaluate` and of prediction (:mod:`lessons_lib.evaluation.predict`).

    Args:
        prob: ``(h, w)`` lesion probabilities at the network's input size.
        size: Original ``(width, height)``.
        resize: Interpolation (``RESIZE_MODES``).
        postprocess: ``prob -> bool mask``; default ``prob > threshold``.
        postprocess_at: ``"original"``: resize the probabilities, then post-process;
            ``"model"``: post-process, then resize the 0/1 mask and cut it at 0.5.
        threshold: Used when ``postprocess`` is ``None``.

    Returns:
        ``bool (height, width)``.
    """

    def binary(p: np.ndarray) -> np.ndarray:
        return postprocess(p) if postprocess is not None else p > threshold

    if postprocess_at == "original":
        return np.asarray(binary(to_size(prob, size, resize)), dtype=bool)
    return to_size(np.asarray(binary(prob), dtype=np.float32), size, resize) > 0.5


def thumbnail(prob: np.ndarray, side: int = 256) -> np.ndarray:
    """A probability map shrunk to at most ``side`` pixels per side, as ``float16``."""
    h, w = prob.shape
    if max(h, w) > side:
        scale = side / max(h, w)
        prob = to_size(prob, (max(1, round(w * scale)), max(1, round(h * scale))), "bilinear")
    return np.asarray(prob, dtype=np.float16)


def predict_probs(
    learn, pairs: Sequence[tuple[Path, Path]], chunk: int = 32
) -> Iterator[np.ndarray]:
    """Yield each image's foreground probability at the network's input size.

    Uses the Learner's own validation transforms (``dls.test_dl``) and its loss's
    ``activation``, so every chapter predicts the way it trained.
    """
    for start in range(0, len(pairs), chunk):
        dl = learn.dls.test_dl([image for image, _ in pairs[start : start + chunk]])
        probs, _ = learn.get_preds(dl=dl)
        yield from foreground(probs.float()).numpy()


def predict_ensemble(
    learners: Sequence, pairs: Sequence[tuple[Path, Path]], chunk: int = 32
) -> Iterator[np.ndarray]:
    """Yield each image's foreground probability averaged over ``learners`` (at input size).

    All Learners must predict at the same input size. One Learner gives
    :func:`predict_probs`'s output unchanged.
    """
    if len(learners) == 0:
        raise ValueError("evaluate needs at least one Learner")
    if len(learners) == 1:
        yield from predict_probs(learners[0], pairs, chunk)
        return
    streams = [predict_probs(learn, pairs, chunk) for learn in learners]
    for probs in zip(*streams, strict=True):
        yield average_probs(probs)


def evaluate(
    learn,
    data: PreparedData,
    split: str,
    resize: str = "nearest",
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    threshold: float = 0.5,
    ids: Sequence[str] | None = None,
    save_dir: Path | str | None = None,
    postprocess_at: str = "original",
) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    """Predict a split and score it at original size against the original masks.

    Args:
        learn: A trained Learner, or a sequence of Learners (an ensemble: their foreground
            probabilities are averaged before resizing and post-processing).
        data: The prepared dataset (its cached images are the network's inputs; its
            manifest names the original masks).
        split: Which split of ``data``.
        resize: How probabilities return to the original size (``RESIZE_MODES``).
        postprocess: ``prob (H, W) -> bool mask``; default ``prob > threshold``.
        threshold: Used when ``postprocess`` is ``None``.
        ids: Evaluate only these image ids (e.g. a random validation subset).
        save_dir: If given, predicted masks are written there as
            ``<id>_segmentation.png`` (0/255), the layout ``python -m lessons_lib score`` reads.
        postprocess_at: ``"original"`` (default): resize the probability to the original size,
            then post-process (or threshold). ``"model"``: post-process (or threshold) at the
            network's input size, then resize the binary mask with ``resize`` (as a 0/1 map,
            cut at 0.5).

    Returns:
        ``(per_image, summary, small)``: per-image scores (and each image's confusion counts,
        ``tp fp tn fn``), their summary (means, pooled
        scores, ``n_images``), and each image's probability (the ensemble's average) as a
        small ``float16`` thumbnail (for figures; see :func:`thumbnail`).
    """
    if postprocess_at not in POSTPROCESS_AT:
        raise ValueError(
            f"unknown postprocess_at {postprocess_at!r}; valid: {', '.join(POSTPROCESS_AT)}"
        )
    learners = [learn] if hasattr(learn, "get_preds") else list(learn)

    def to_original(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return mask_at_original(prob, size, resize, postprocess, postprocess_at, threshold)

    entries = select(data, split, ids)
    pairs = [(data.path / e["image"], data.path / e["mask"]) for e in entries]
    return score_at_original(entries, predict_ensemble(learners, pairs), to_original, save_dir)


def select(data: PreparedData, split: str, ids: Sequence[str] | None = None) -> list[dict]:
    """The manifest entries of ``split``, restricted to ``ids`` when given."""
    entries = data.entries(split)
    if ids is None:
        return entries
    wanted = set(ids)
    return [e for e in entries if e["id"] in wanted]


def score_at_original(
    entries: Sequence[dict],
    predictions: Iterable[np.ndarray],
    to_original: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
    save_dir: Path | str | None = None,
) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    """Score predictions made at working size against the original masks at original size.

    The one scoring loop of the course: chapters (:func:`evaluate`) and the classical
    baseline (:mod:`lessons_lib.baseline`) differ only in how they predict and how a
    prediction returns to the original size.

    Args:
        entries: Manifest entries (``id``, ``orig_mask``), in the order of ``predictions``.
        predictions: One map per entry at working size (probabilities or a 0/1 mask).
        to_original: ``(map, (width, height)) -> bool mask`` at the original size.
        save_dir: If given, the final masks are written there as ``<id>_segmentation.png``.

    Returns:
        ``(per_image, summary, small)`` as :func:`evaluate` documents.
    """
    scorer, small = SegmentationScorer(), {}
    for entry, prob in zip(entries, predictions, strict=True):
        truth = read_mask(entry["orig_mask"])
        pred = to_original(prob, (truth.shape[1], truth.shape[0]))
        scorer.add(entry["id"], truth, pred)
        small[entry["id"]] = thumbnail(prob)
        if save_dir is not None:
            img = Image.fromarray(pred.astype(np.uint8) * 255)
            write_with(
                Path(save_dir) / f"{entry['id']}_segmentation.png",
                lambda p, img=img: img.save(p, format="PNG"),
            )
    return scorer.per_image(counts=True), scorer.summary(), small
