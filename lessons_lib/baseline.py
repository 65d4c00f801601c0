"""A classical, hand-crafted lesion segmentation: the floor every network must beat.

Introduced in the "Data and metrics" chapter. Before deep learning, dermoscopy segmentation was
a chain of hand-tuned image-processing steps; the papers of this book all contrast themselves
with such pipelines. :func:`otsu_segment` is a representative, deliberately plain member of
that family, with every step an option:

1. **Working resolution.** The image is shrunk (area averaging) so that its shorter side is
   ``work_size`` pixels; every length below is a fraction of that side, so the result does not
   depend on the file's resolution. The mask is brought back to the input's size at the end.
2. **Lesion-contrast channel.** Lesions are darker than skin, most of all in the blue channel
   (melanin absorbs short wavelengths most). ``channel`` picks ``"blue"``, ``"luminance"``
   (ITU-R 601 weights) or ``"pca"`` (projection on the first principal component of the
   image's RGB pixels, oriented so that dark stays dark).
3. **Hair suppression.** A grey-level morphological closing with a small disk removes thin dark
   structures such as hairs (the idea of DullRazor), then a light Gaussian blur.
4. **Dermoscope frame.** Very dark regions connected to the image border (the black circular
   frame and vignetted corners) are excluded from everything that follows.
5. **Otsu's threshold** (N. Otsu, IEEE Trans. SMC, 1979) on the remaining pixels: darker is
   lesion. Then **illumination correction**: the channel is divided by the brightness of the
   skin (the pixels above the threshold), smoothed over a large window, and Otsu's threshold
   is applied again, so that a darker side of the image is not taken for lesion.
6. **Morphology.** A binary opening (removes specks and residual hair) then a closing (bridges
   gaps in a blotchy lesion).
7. **One region.** The lesion is the most plausible connected component, the one with the
   largest *darkness mass* (the sum over its pixels of how far below the threshold they are),
   so that a small dark lesion beats a large, barely darker patch of shading. Components that
   do not touch the image border (or the frame) are preferred, but a border-touching component
   still wins when its mass is much larger (``border_weight``), as for lesions that fill the
   field. Its holes are filled, as in the ISIC ground truth.

The steps themselves are implemented in :mod:`lessons_lib.baseline_steps`.

Usage::

    from lessons_lib.baseline import ClassicalBaseline, otsu_segment, otsu_steps
    mask = otsu_segment(image)                       # bool (H, W)
    steps = otsu_steps(image)                        # every intermediate, for figures
    per_image, summary, small = ClassicalBaseline().evaluate(data, "test")
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lessons_lib.baseline_steps import CHANNELS, _grow, _pipeline, contrast_channel, frame_mask

__all__ = [
    "CHANNELS",
    "ClassicalBaseline",
    "contrast_channel",
    "frame_mask",
    "otsu_segment",
    "otsu_steps",
]


def otsu_segment(
    image: np.ndarray,
    *,
    channel: str = "blue",
    work_size: int | None = 256,
    hair_radius: float = 0.015,
    blur_sigma: float = 0.005,
    frame_level: float = 0.25,
    frame_margin: float = 0.02,
    flatten: float = 0.2,
    opening_radius: float = 0.01,
    closing_radius: float = 0.02,
    border_weight: float = 0.1,
    fill_holes: bool = True,
) -> np.ndarray:
    """Segment the lesion of one dermoscopy image with Otsu's threshold and morphology.

    The steps are listed in this module's docstring. Lengths are fractions of the working
    image's shorter side.

    Args:
        image: RGB ``uint8`` (or ``float`` in ``[0, 1]``) image; greyscale ``(H, W)`` is
            accepted and used as it is.
        channel: Lesion-contrast channel: ``"blue"``, ``"luminance"`` or ``"pca"``.
        work_size: Shorter side of the working image in pixels (``None``: full size).
        hair_radius: Radius of the grey-level closing that removes hairs (0: off).
        blur_sigma: Gaussian blur of the channel before thresholding (0: off).
        frame_level: Frame pixels are darker than this fraction of the skin's brightness and
            connected to the border (0: no frame removal). See :func:`frame_mask`.
        frame_margin: How far the frame is grown to drop its soft rim.
        flatten: Illumination correction: the channel is divided by the skin's brightness
            smoothed with a Gaussian of this sigma (fraction of the side), estimated from the
            pixels a first Otsu pass calls skin, and thresholded again (0: off).
        opening_radius: Radius of the binary opening (0: off).
        closing_radius: Radius of the binary closing (0: off).
        border_weight: Components compete by darkness mass (the sum over their pixels of how
            far below the threshold they are); one touching the image border or the frame
            competes with ``border_weight`` times its mass (1: no preference; 0:
            border-touching components only win when no other component exists).
        fill_holes: Fill the holes of the chosen region.

    Shape:
        ``(H, W, 3)`` or ``(H, W)`` -> ``(H, W)``.

    Returns:
        ``bool`` mask at the input's size; all ``False`` when nothing darker than the skin is
        found (e.g. a uniform image).
    """
    options = {k: v for k, v in locals().items() if k != "image"}
    steps = _pipeline(image, **options)
    return _grow(steps["mask"], steps["input_shape"])


def otsu_steps(image: np.ndarray, **options) -> dict:
    """Every intermediate result of :func:`otsu_segment`, for figures and debugging.

    Args:
        image: As for :func:`otsu_segment`.
        **options: :func:`otsu_segment`'s options.

    Returns:
        Arrays at the working size: ``image`` (RGB float), ``channel`` (the lesion-contrast
        channel), ``smoothed`` (after hair closing and blur), ``frame``, ``first`` (first
        Otsu pass), ``corrected`` (illumination-corrected channel), ``threshold`` (second
        pass), ``morphology`` (after opening and closing), ``mask`` (the chosen region,
        holes filled); and ``input_shape``.
    """
    defaults = {
        k: p.default for k, p in inspect.signature(otsu_segment).parameters.items() if k != "image"
    }
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid: {sorted(defaults)}")
    return _pipeline(image, **{**defaults, **options})


@dataclass(frozen=True)
class ClassicalBaseline:
    """:func:`otsu_segment` with fixed options, and its evaluation as the chapters evaluate.

    The fields are :func:`otsu_segment`'s options (same names, same defaults).
    """

    channel: str = "blue"
    work_size: int | None = 256
    hair_radius: float = 0.015
    blur_sigma: float = 0.005
    frame_level: float = 0.25
    frame_margin: float = 0.02
    flatten: float = 0.2
    opening_radius: float = 0.01
    closing_radius: float = 0.02
    border_weight: float = 0.1
    fill_holes: bool = True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Segment one RGB image; returns a ``bool`` mask of its size."""
        return otsu_segment(image, **dataclasses.asdict(self))

    def evaluate(
        self,
        data,
        split: str,
        ids: Sequence[str] | None = None,
        resize: str = "nearest",
        save_dir: Path | str | None = None,
    ) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
        """Segment a prepared split and score it at original size, like the chapters.

        Each image is read from the prepared cache (the input a network gets), segmented,
        brought back to the original image's size with ``resize`` interpolation and scored
        against the **original** mask with :class:`~lessons_lib.metrics.SegmentationScorer`.

        Args:
            data: A :class:`~lessons_lib.data.PreparedData`.
            split: Which split of ``data``.
            ids: Evaluate only these image ids.
            resize: ``nearest``, ``bilinear`` or ``bicubic`` (see
                :func:`lessons_lib.evaluate.to_size`).
            save_dir: If given, predicted masks are written there as
                ``<id>_segmentation.png`` (0/255).

        Returns:
            ``(per_image, summary, small)`` exactly like :func:`lessons_lib.evaluate.evaluate`:
            per-image scores, their summary, and each prediction as a small ``float16``
            thumbnail (1 = lesion) for :func:`lessons_lib.viz.show_overlays`.
        """
        from lessons_lib.evaluate import score_at_original, select, to_size

        entries = select(data, split, ids)
        masks = (
            self(np.asarray(Image.open(data.path / e["image"]).convert("RGB"))).astype(np.float32)
            for e in entries
        )

        def to_original(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
            return to_size(mask, size, resize) > 0.5

        return score_at_original(entries, masks, to_original, save_dir)
