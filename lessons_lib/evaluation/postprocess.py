"""From a lesion-probability map to a binary mask: plain thresholding and the dual-threshold method.

The dual-threshold method is from Y. Yuan and Y.-C. Lo, "Improving Dermoscopic Image
Segmentation with Enhanced Convolutional-Deconvolutional Networks", IEEE J. Biomed. Health
Inform., 2017 (arXiv:1709.09780), end of Section III-A: "a relatively high threshold
(th_H = 0.8) is firstly applied to determine the tumor center, which is calculated as the
centroid of the region that has the largest mass among the candidates from thresholding. Then a
lower threshold, th_L = 0.5, is applied to the segmentation map. After filling small holes with
morphological dilation, the final tumor mask is determined as the region that embraces the tumor
center."

Our reading (details the paper leaves open):

* Regions are 8-connected components; a pixel is "above" a threshold if ``prob > t``
  (strictly, like the losses' ``decodes``).
* "Mass" of a region = sum of its probabilities (not its area); its "centroid" is the
  probability-weighted centre of mass, rounded to the nearest pixel.
* Holes are filled with ``scipy.ndimage.binary_fill_holes`` (every background area not
  connected to the image border), not with a dilation, which would also grow the outline.
  ``fill_holes(mask, max_area=...)`` fills only holes up to a size if wanted.
* If the centre is not in the low-threshold mask (e.g. a crescent-shaped region), we take the
  low-threshold region containing the chosen high-threshold region: it always exists because
  every pixel above ``high`` is also above ``low``.
* No pixel above ``high``: the low-threshold region with the largest mass; nothing above
  ``low``: an all-False mask.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = [
    "FOOTPRINTS",
    "POSTPROCESS",
    "dual_threshold",
    "fill_holes",
    "opening",
    "threshold",
    "threshold_and_open",
]

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity structuring element


def _prob_2d(prob: np.ndarray) -> np.ndarray:
    """Accept (H, W), (1, H, W) or a torch tensor; return a float64 (H, W) array."""
    if hasattr(prob, "detach"):
        prob = prob.detach().cpu().numpy()
    arr = np.asarray(prob, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) probability map, got shape {arr.shape}")
    return arr


def threshold(prob: np.ndarray, t: float = 0.5) -> np.ndarray:
    """Plain thresholding, ``prob > t``.

    Args:
        prob: Lesion probabilities (not logits).
        t: Threshold.

    Shape:
        (H, W) or (1, H, W) -> (H, W).

    Returns:
        Boolean mask.
    """
    return _prob_2d(prob) > t


def fill_holes(mask: np.ndarray, max_area: int | None = None) -> np.ndarray:
    """Fill holes (background areas enclosed by the mask, i.e. not touching the border).

    Args:
        mask: Boolean mask.
        max_area: If given, fill only holes of at most this many pixels.

    Shape:
        (H, W) -> (H, W).

    Returns:
        Boolean mask with the holes set to True.
    """
    mask = np.asarray(mask, dtype=bool)
    filled = ndimage.binary_fill_holes(mask)
    if max_area is None:
        return filled
    holes, n = ndimage.label(filled & ~mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(holes.ravel())
    small = sizes <= max_area
    small[0] = False
    return mask | small[holes]


_fill_holes = fill_holes  # ``dual_threshold``'s argument ``fill_holes`` shadows the function


def _heaviest(labels: np.ndarray, n: int, prob: np.ndarray) -> int:
    """Label (1..n) of the region with the largest probability mass."""
    mass = ndimage.sum_labels(prob, labels, index=np.arange(1, n + 1))
    return int(np.argmax(mass)) + 1


def dual_threshold(
    prob: np.ndarray, high: float = 0.8, low: float = 0.5, fill_holes: bool = True
) -> np.ndarray:
    """Dual-threshold post-processing of Yuan & Lo 2017 (Section III-A); see the module docstring.

    Args:
        prob: Lesion probabilities in [0, 1] (a numpy array or a torch tensor).
        high: Threshold finding the candidate centre regions (th_H = 0.8 in the paper).
        low: Threshold giving the mask (th_L = 0.5 in the paper); at most ``high``.
        fill_holes: Fill holes of the low-threshold mask before choosing the region.

    Shape:
        (H, W) or (1, H, W) -> (H, W).

    Returns:
        Boolean mask: the single connected low-threshold region containing the lesion centre
        (all False if no pixel exceeds ``low``).

    Raises:
        ValueError: ``low > high`` or a map that is not 2-D.
    """
    if low > high:
        raise ValueError(f"need low <= high, got low={low}, high={high}")
    p = _prob_2d(prob)
    low_mask = p > low
    if fill_holes:
        low_mask = _fill_holes(low_mask)
    low_labels, n_low = ndimage.label(low_mask, structure=_EIGHT)
    if n_low == 0:
        return np.zeros(p.shape, dtype=bool)

    high_labels, n_high = ndimage.label(p > high, structure=_EIGHT)
    if n_high == 0:
        return low_labels == _heaviest(low_labels, n_low, p)

    best = _heaviest(high_labels, n_high, p)
    region = high_labels == best
    cy, cx = ndimage.center_of_mass(p * region)
    iy = int(np.clip(round(cy), 0, p.shape[0] - 1))
    ix = int(np.clip(round(cx), 0, p.shape[1] - 1))
    chosen = low_labels[iy, ix]
    if chosen == 0:  # centre outside the low mask: the low region holding the high region
        chosen = int(np.bincount(low_labels[region]).argmax())
    return low_labels == chosen


# ----------------------------------------------------------------------------- LesionSeg
# Threshold, then a 3x3 morphological opening: D. Ramachandram and T. DeVries, "LesionSeg:
# Semantic segmentation of skin lesions using Deep Convolutional Neural Network",
# arXiv:1703.03372, 2017, Section 3.4: the output, upscaled to the original size by bicubic
# interpolation, is binarised "using a threshold of 128", then "We also apply morphological
# opening to eliminate small, spurious errors [...] using a 3x3 disk-shaped kernel".

FOOTPRINTS: dict[str, np.ndarray] = {
    "cross": np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool),
    "square": np.ones((3, 3), dtype=bool),
}
"""3x3 structuring elements by name. ``"cross"`` is the digital disk of radius 1: what
``skimage.morphology.disk(1)`` and OpenCV's 3x3 ``MORPH_ELLIPSE`` both return, our reading of
the paper's "3x3 disk-shaped kernel"; ``"square"`` is the full 3x3 square."""


def opening(mask: np.ndarray, footprint: str | np.ndarray = "cross") -> np.ndarray:
    """Binary morphological opening (erosion, then dilation) with a small structuring element.

    Removes foreground specks and one-pixel bridges narrower than the footprint (Ramachandram &
    DeVries 2017, Section 3.4: "morphological opening to eliminate small, spurious errors").
    Pixels outside the image are ignored (as ``skimage.morphology.binary_opening`` does): the
    erosion treats them as foreground and the dilation as background, so a lesion touching the
    border keeps its border pixels, and opening never adds a pixel.

    Args:
        mask: Boolean (or 0/1) mask.
        footprint: A name in :data:`FOOTPRINTS` (``"cross"``, ``"square"``) or a boolean array.

    Shape:
        (H, W) -> (H, W).

    Returns:
        The opened boolean mask (a subset of ``mask``).

    Raises:
        ValueError: an unknown footprint name, or a mask that is not 2-D.
    """
    if isinstance(footprint, str):
        if footprint not in FOOTPRINTS:
            raise ValueError(f"unknown footprint {footprint!r}; valid: {', '.join(FOOTPRINTS)}")
        footprint = FOOTPRINTS[footprint]
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    structure = np.asarray(footprint, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=1)
    return ndimage.binary_dilation(eroded, structure=structure, border_value=0)


def threshold_and_open(
    prob: np.ndarray, t: float = 0.5, footprint: str | np.ndarray | None = "cross"
) -> np.ndarray:
    """LesionSeg post-processing (Ramachandram & DeVries 2017, Section 3.4): threshold, open.

    "Binarizing the upsampled output mask using a threshold of 128" is read on the lesion
    probability stored as 8 bits, ``round(255 p)``: it is at least 128 exactly when
    ``p >= 0.5``, so a pixel is lesion if ``prob >= t`` (note: ``>=``, where :func:`threshold`
    uses ``>``). The opening (:func:`opening`) then removes small spurious detections.

    Args:
        prob: Lesion probabilities in [0, 1], already at the original image size (the paper
            upscales with bicubic interpolation first: ``evaluate(resize="bicubic")``).
        t: Threshold (0.5 = 128 / 255 after rounding).
        footprint: Structuring element of the opening (:data:`FOOTPRINTS` name or array);
            ``None`` skips the opening (the ablation).

    Shape:
        (H, W) or (1, H, W) -> (H, W).

    Returns:
        Boolean mask.
    """
    mask = _prob_2d(prob) >= t
    return mask if footprint is None else opening(mask, footprint)


# ----------------------------------------------------------------------------- registry
POSTPROCESS: dict[str, Callable[..., np.ndarray]] = {
    "none": threshold,
    "threshold": threshold,
    "dual_threshold": dual_threshold,
    "threshold_and_open": threshold_and_open,
}
"""Post-processing by name: ``(H, W)`` probabilities -> ``(H, W)`` boolean mask, each
function's defaults being its paper's. The one registry: chapters choose from it (``"none"``:
plain thresholding, nothing after it, the chapters' parameter value) and
:mod:`lessons_lib.evaluation.predict` records and rebuilds a run's post-processing from it, by
function name with keyword arguments (``predictor.json``)."""
