"""What a mask's pixel means: the one binarisation rule, shared by the readers and the metrics.

The ISIC challenges' scorer (``isic-challenge-scoring``) calls a pixel of an 8-bit mask lesion
when its value is ``> 128``. The course reads every mask by that rule, and also recognises the
0/1-valued masks that a network's thresholded output (or a NumPy user) produces.
:mod:`lessons_lib.data.io` binarises the masks it reads with it and :mod:`lessons_lib.metrics`
scores with it; both import it from here, so neither package imports the other for it. It is
re-exported as :func:`lessons_lib.metrics.binarise`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["binarise"]


def binarise(mask: object, name: str = "mask") -> np.ndarray:
    """Turn a mask into a boolean lesion map.

    Rule: ``bool`` arrays are used as-is. Integer arrays whose values all lie in {0, 1} are read
    as 0/1 masks (1 = lesion). Any other integer array (0/255 masks, grey values) is binarised
    with ``> 128``, as the official scorer does. Float arrays are refused because they are
    ambiguous (probabilities? 0/255?): threshold them first, e.g. ``probs > 0.5``.

    Args:
        mask: ``(H, W)`` array-like mask.
        name: What to call it in error messages (``"truth"``, a file path, ...).

    Returns:
        ``bool`` array of shape ``(H, W)``.

    Raises:
        ValueError: The mask is not 2-D, or is empty.
        TypeError: The mask is neither ``bool`` nor integer.
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) mask, got shape {array.shape}; "
            "squeeze channel axes, and score a batch image by image with SegmentationScorer"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} has dtype {array.dtype}; pass a bool or integer mask "
            "(threshold probabilities first, e.g. probs > 0.5)"
        )
    if array.min() >= 0 and array.max() <= 1:
        return array == 1
    return array > 128
