"""The steps of the classical baseline (:func:`lessons_lib.baseline.otsu_segment`).

:mod:`lessons_lib.baseline` describes the pipeline step by step and is where it is used from;
this module holds its image-processing building blocks (working resolution, lesion-contrast
channel, dermoscope frame, skin brightness, border contact) and the pipeline itself,
:func:`_pipeline`, which returns every intermediate result. The public names defined here are
re-exported by :mod:`lessons_lib.baseline`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

__all__ = ["CHANNELS", "contrast_channel", "frame_mask"]

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
