"""A classical, hand-crafted lesion segmentation: the floor every network must beat.

Before deep learning, dermoscopy segmentation was
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
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

__all__ = [
    "CHANNELS",
    "ClassicalBaseline",
    "contrast_channel",
    "frame_mask",
    "otsu_segment",
    "otsu_steps",
]


CHANNELS = ("blue", "luminance", "pca")
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def _disk(radius: float) -> np.ndarray | None:
    r = int(round(radius))
    return disk(r).astype(bool) if r >= 1 else None


def _shrink(image: np.ndarray, work_size: int | None) -> np.ndarray:
    """Area-average ``image`` so that its shorter side is at most ``work_size`` pixels."""
    h, w = image.shape[:2]
    if work_size is None or min(h, w) <= work_size:
        return image
    scale = work_size / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def _grow(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a working-size mask back to ``shape`` with a smooth (bilinear, > 0.5) border."""
    if mask.shape == shape:
        return mask
    small = Image.fromarray(mask.astype(np.uint8) * 255)
    big = small.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(big) > 127


def contrast_channel(rgb: np.ndarray, channel: str = "blue") -> np.ndarray:
    """One grey channel in which lesions are darker than skin.

    Args:
        rgb: ``float`` RGB image in ``[0, 1]``.
        channel: ``"blue"``, ``"luminance"`` or ``"pca"`` (first principal component of the
            RGB pixels, signed to correlate positively with luminance, rescaled to ``[0, 1]``).

    Shape:
        ``(H, W, 3) -> (H, W)``.
    """
    if channel == "blue":
        return rgb[..., 2]
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    if channel == "luminance":
        return lum
    if channel == "pca":
        pixels = rgb.reshape(-1, 3)
        centred = pixels - pixels.mean(0)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
        proj = (centred @ vt[0]).reshape(rgb.shape[:2])
        if np.corrcoef(proj.ravel(), lum.ravel())[0, 1] < 0:
            proj = -proj
        span = float(np.ptp(proj))
        return (proj - proj.min()) / span if span > 0 else np.zeros_like(proj)
    raise ValueError(f"unknown channel {channel!r}; valid: {', '.join(CHANNELS)}")


def frame_mask(rgb: np.ndarray, level: float = 0.25, margin: float = 0.02) -> np.ndarray:
    """The dark dermoscope frame: very dark pixels connected to the image border.

    Args:
        rgb: ``float`` RGB image in ``[0, 1]``.
        level: A pixel is "very dark" when its luminance is below ``level`` times the image's
            bright skin level (its 90th luminance percentile).
        margin: The frame is grown by this fraction of the shorter side, to drop its soft rim.

    Shape:
        ``(H, W, 3) -> (H, W)`` bool.
    """
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    dark = lum < level * max(float(np.percentile(lum, 90)), 1e-6)
    labels, n = ndimage.label(dark, structure=_EIGHT)
    if n == 0:
        return np.zeros(lum.shape, bool)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    frame = np.isin(labels, edge[edge > 0])
    grow = _disk(margin * min(lum.shape))
    if frame.any() and grow is not None:
        frame = ndimage.binary_dilation(frame, structure=grow)
    return frame


def _background(grey: np.ndarray, skin: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth brightness of the skin: a Gaussian average over ``skin`` pixels only.

    Normalised convolution: ``G*(grey * skin) / G*skin``, so lesion and frame pixels do not
    darken the estimate. Where no skin is near, the mean skin level is used.
    """
    fallback = float(grey[skin].mean()) if skin.any() else float(grey.mean())
    num = ndimage.gaussian_filter(np.where(skin, grey, 0.0), sigma)
    den = ndimage.gaussian_filter(skin.astype(np.float64), sigma)
    background = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    return np.maximum(background, 1e-3)


def _touches(labels: np.ndarray, n: int, frame: np.ndarray) -> np.ndarray:
    """Boolean per label 1..n: does the component touch the image edge or the frame?"""
    touch = np.zeros(n + 1, bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touch[edge] = True
    if frame.any():
        near = ndimage.binary_dilation(frame, structure=_EIGHT)
        touch[np.unique(labels[near])] = True
    return touch[1:]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return array


def _pipeline(
    image: np.ndarray,
    channel: str,
    work_size: int | None,
    hair_radius: float,
    blur_sigma: float,
    frame_level: float,
    frame_margin: float,
    flatten: float,
    opening_radius: float,
    closing_radius: float,
    border_weight: float,
    fill_holes: bool,
) -> dict:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; valid: {', '.join(CHANNELS)}")
    array = _as_rgb(image)
    rgb = _shrink(array, work_size).astype(np.float64) / 255.0
    side = min(rgb.shape[:2])
    steps: dict = {"input_shape": array.shape[:2], "image": rgb}

    grey = steps["channel"] = contrast_channel(rgb, channel)
    hair = _disk(hair_radius * side)
    if hair is not None:
        grey = ndimage.grey_closing(grey, footprint=hair)
    if blur_sigma > 0:
        grey = ndimage.gaussian_filter(grey, blur_sigma * side)
    steps["smoothed"] = grey
    frame = np.zeros(grey.shape, bool)
    if frame_level > 0:
        frame = frame_mask(rgb, frame_level, frame_margin)
    steps["frame"] = frame
    empty = np.zeros(grey.shape, bool)
    for name in ("first", "threshold", "morphology", "mask"):
        steps[name] = empty
    steps["corrected"] = grey
    valid = grey[~frame]
    if valid.size < 2 or float(np.ptp(valid)) < 1e-3:  # nothing to threshold
        return steps
    level = threshold_otsu(valid)
    lesion = steps["first"] = (grey < level) & ~frame
    if flatten > 0:  # divide by the skin's smooth brightness, then threshold again
        grey = steps["corrected"] = grey / _background(grey, ~lesion & ~frame, flatten * side)
        level = threshold_otsu(grey[~frame])
        lesion = (grey < level) & ~frame
    steps["threshold"] = lesion

    opening, closing = _disk(opening_radius * side), _disk(closing_radius * side)
    if opening is not None:
        lesion = ndimage.binary_opening(lesion, structure=opening)
    if closing is not None:
        # pad so that the closing does not erode regions touching the image border
        pad = closing.shape[0]
        lesion = np.pad(lesion, pad, mode="edge")
        lesion = ndimage.binary_closing(lesion, structure=closing)[pad:-pad, pad:-pad]
        lesion &= ~frame
    steps["morphology"] = lesion

    labels, n = ndimage.label(lesion, structure=_EIGHT)
    if n == 0:
        return steps
    # plausibility of each component: its "darkness mass", the sum over its pixels of how far
    # below the threshold they are (a dark lesion beats a large, barely darker shading)
    mass = ndimage.sum_labels(np.clip(level - grey, 0, None), labels, np.arange(1, n + 1))
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    score = np.where(_touches(labels, n, frame), border_weight * mass, mass)
    best = int(np.argmax(score)) + 1 if score.max() > 0 else int(np.argmax(area)) + 1
    region = labels == best
    steps["mask"] = ndimage.binary_fill_holes(region) if fill_holes else region
    return steps


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
                :func:`lessons_lib.evaluation.to_size`).
            save_dir: If given, predicted masks are written there as
                ``<id>_segmentation.png`` (0/255).

        Returns:
            ``(per_image, summary, small)`` exactly like :func:`lessons_lib.evaluation.evaluate`:
            per-image scores, their summary, and each prediction as a small ``float16``
            thumbnail (1 = lesion) for :func:`lessons_lib.viz.show_overlays`.
        """
        from lessons_lib.evaluation import score_at_original, select, to_size

        entries = select(data, split, ids)
        masks = (
            self(np.asarray(Image.open(data.path / e["image"]).convert("RGB"))).astype(np.float32)
            for e in entries
        )

        def to_original(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
            return to_size(mask, size, resize) > 0.5

        return score_at_original(entries, masks, to_original, save_dir)
