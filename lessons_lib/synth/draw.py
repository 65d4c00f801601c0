"""Drawing primitives for the synthetic dermoscopy generator (:mod:`lessons_lib.synth`).

Every function here is pure numpy / PIL, works on float32 images in ``[0, 1]`` and takes its
randomness from an explicit :class:`numpy.random.Generator`, so the caller controls
determinism. None of them touches the lesion mask: they draw the acquisition artefacts
(hairs, ruler, colour chart, bubbles, vignette, uneven light) that the papers name.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

RNG = np.random.Generator


def smooth_noise(rng: RNG, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field: a coarse Gaussian grid upsampled bicubically.

    Args:
        rng: Source of randomness.
        height: Output height in pixels.
        width: Output width in pixels.
        cell: Approximate feature size in pixels (distance between grid nodes).

    Shape:
        Output: ``(height, width)``.

    Returns:
        float32 field with roughly zero mean and unit standard deviation.
    """
    gh = max(2, int(np.ceil(height / cell)) + 1)
    gw = max(2, int(np.ceil(width / cell)) + 1)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    field = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(field, dtype=np.float32) * 1.3


def composite(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Blend ``colour`` over ``image`` in place with per-pixel opacity ``alpha``.

    Args:
        image: float32 RGB image, modified in place.
        alpha: Opacity in ``[0, 1]``.
        colour: An RGB triple or a per-pixel RGB image.

    Shape:
        image: ``(H, W, 3)``; alpha: ``(H, W)``; colour: ``(3,)`` or ``(H, W, 3)``.
    """
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if rows.size == 0:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a = alpha[box][..., None]
    if np.ndim(colour) == 3:
        colour = colour[box]
    crop = image[box]
    crop += a * (colour - crop)


def illumination(rng: RNG, height: int, width: int, strength: float) -> np.ndarray:
    """Multiplicative light field: a tilted plane, a soft hot spot and slow blotches.

    Args:
        rng: Source of randomness.
        height: Image height.
        width: Image width.
        strength: 0 gives a flat field of ones; 1 gives up to about +-35 % variation.

    Shape:
        Output: ``(height, width)``.

    Returns:
        float32 gain field (multiply the image by it).
    """
    y, x = np.ogrid[-0.5 : 0.5 : height * 1j, -0.5 : 0.5 : width * 1j]
    angle = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0.25, 0.6) * strength
    gain = 1.0 + tilt * (np.cos(angle) * x + np.sin(angle) * y * height / width)
    hx, hy, hr = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(0.15, 0.4)
    gain = gain + rng.uniform(0.0, 0.2) * strength * np.exp(
        -((x - hx) ** 2 + (y - hy) ** 2) / hr**2
    )
    gain = gain + 0.06 * strength * smooth_noise(rng, height, width, width / 2.5)
    return gain.astype(np.float32)


def vignette(rng: RNG, height: int, width: int) -> np.ndarray:
    """Dark dermoscope frame: a lit disc with darkened rim and near-black outside.

    Args:
        rng: Source of randomness.
        height: Image height.
        width: Image width.

    Shape:
        Output: ``(height, width)``.

    Returns:
        float32 gain field in ``[0.03, 1]``.
    """
    diag = float(np.hypot(height, width))
    radius = rng.uniform(0.36, 0.47) * diag
    cy = height / 2 + rng.uniform(-0.06, 0.06) * height
    cx = width / 2 + rng.uniform(-0.06, 0.06) * width
    y, x = np.ogrid[:height, :width]
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2, dtype=np.float32) / radius
    soft = rng.uniform(0.015, 0.05)
    inside = np.clip((1.0 - r) / soft, 0.0, 1.0)
    inside = inside * inside * (3 - 2 * inside)
    falloff = 1.0 - rng.uniform(0.15, 0.45) * r**4
    floor = rng.uniform(0.02, 0.08)
    return (floor + (1 - floor) * inside * falloff).astype(np.float32)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, steps: int) -> np.ndarray:
    """Points on quadratic Bezier curves; inputs ``(N, 2)``, output ``(N, steps, 2)``."""
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    return (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * p1[:, None] + t**2 * p2[:, None]


def hair_layer(rng: RNG, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin dark curved hairs, antialiased by drawing at twice the resolution.

    Args:
        rng: Source of randomness.
        height: Image height.
        width: Image width.

    Shape:
        alpha: ``(height, width)``; colour: ``(3,)``.

    Returns:
        ``(alpha, colour)``: per-pixel opacity and the hair colour (float RGB in ``[0, 1]``).
    """
    scale = 2
    n = int(np.clip(rng.lognormal(2.3, 0.8), 2, 70))
    start = rng.uniform(-0.1, 1.1, (n, 2)) * (width, height)
    angle = rng.normal(rng.uniform(0, np.pi), 0.5, n)  # hairs share a rough direction
    length = rng.uniform(0.25, 1.0, n) * width
    end = start + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    normal = np.stack([-np.sin(angle), np.cos(angle)], 1)
    bend = rng.normal(0.0, 0.18, n)[:, None] * length[:, None] * normal
    curves = _bezier(start, (start + end) / 2 + bend, end, 24) * scale
    thick = rng.uniform(0.7, 1.8) * width / 256 * rng.uniform(0.7, 1.3, n)
    opacity = rng.uniform(0.6, 1.0, n)
    layer = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(layer)
    for curve, th, op in zip(curves, thick, opacity, strict=True):
        pts = [(float(px), float(py)) for px, py in curve]
        draw.line(pts, fill=int(op * 255), width=max(1, round(th * scale)), joint="curve")
    alpha = np.asarray(layer.resize((width, height), Image.Resampling.BOX), dtype=np.float32)
    colour = np.array([0.16, 0.11, 0.08]) * rng.uniform(0.4, 1.6)
    return alpha / 255.0, colour.astype(np.float32)


def ruler_layer(rng: RNG, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Millimetre ruler: a baseline near one edge with ticks, longer every 5th and 10th.

    Args:
        rng: Source of randomness.
        height: Image height.
        width: Image width.

    Shape:
        alpha: ``(height, width)``; colour: ``(3,)``.

    Returns:
        ``(alpha, colour)`` as for :func:`hair_layer`.
    """
    scale = 2
    side = rng.choice(4, p=[0.55, 0.15, 0.15, 0.15])  # bottom, top, left, right
    along, across = (width, height) if side < 2 else (height, width)
    margin = rng.uniform(0.04, 0.2) * across
    step = rng.uniform(0.012, 0.025) * along
    start = rng.uniform(0.0, 0.4) * along
    stop = start + rng.uniform(0.35, 0.8) * along
    ticks = np.arange(start, min(stop, along), step)
    idx = np.arange(len(ticks))
    tick_len = np.where(idx % 10 == 0, 3.0, np.where(idx % 5 == 0, 2.0, 1.2)) * step
    tilt = rng.normal(0.0, 0.03)
    base = margin + (ticks - start) * tilt  # baseline position across the edge
    seg = [(ticks[0], base[0], ticks[-1], base[-1])] if len(ticks) > 1 else []
    seg += [(t, b, t + tilt * ln, b + ln) for t, b, ln in zip(ticks, base, tick_len, strict=True)]
    layer = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(layer)
    lw = max(1, round(scale * width / 300))
    for a0, c0, a1, c1 in seg:
        if side == 0:
            pts = [(a0, height - c0), (a1, height - c1)]
        elif side == 1:
            pts = [(a0, c0), (a1, c1)]
        elif side == 2:
            pts = [(c0, a0), (c1, a1)]
        else:
            pts = [(width - c0, a0), (width - c1, a1)]
        draw.line([(px * scale, py * scale) for px, py in pts], fill=230, width=lw)
    alpha = np.asarray(layer.resize((width, height), Image.Resampling.BOX), dtype=np.float32)
    purple = np.array([0.35, 0.2, 0.5]) if rng.random() < 0.4 else np.array([0.1, 0.1, 0.1])
    return alpha / 255.0, purple.astype(np.float32)


CHART_COLOURS = np.array(
    [
        [0.85, 0.15, 0.15],
        [0.15, 0.65, 0.2],
        [0.15, 0.25, 0.8],
        [0.95, 0.85, 0.15],
        [0.95, 0.95, 0.95],
        [0.5, 0.5, 0.5],
        [0.1, 0.1, 0.1],
        [0.2, 0.75, 0.8],
        [0.8, 0.2, 0.7],
    ],
    dtype=np.float32,
)


def draw_colour_chart(rng: RNG, image: np.ndarray) -> None:
    """Draw a small grid of calibration squares on a dark card into one corner, in place.

    Args:
        rng: Source of randomness.
        image: float32 RGB image in ``[0, 1]``.

    Shape:
        image: ``(H, W, 3)``.
    """
    height, width = image.shape[:2]
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    sq = max(3, round(rng.uniform(0.035, 0.06) * width))
    gap = max(1, sq // 5)
    card_h, card_w = rows * (sq + gap) + gap, cols * (sq + gap) + gap
    corner = int(rng.integers(4))
    inset = round(rng.uniform(0.0, 0.05) * width)
    y0 = inset if corner < 2 else height - card_h - inset
    x0 = inset if corner % 2 == 0 else width - card_w - inset
    y0, x0 = max(0, y0), max(0, x0)
    image[y0 : y0 + card_h, x0 : x0 + card_w] = rng.uniform(0.05, 0.2)
    colours = CHART_COLOURS[rng.permutation(len(CHART_COLOURS))]
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        ys, xs = y0 + gap + r * (sq + gap), x0 + gap + c * (sq + gap)
        image[ys : ys + sq, xs : xs + sq] = colours[k % len(colours)]


def draw_bubbles(rng: RNG, image: np.ndarray) -> None:
    """Draw gel / air bubbles in place: bright rims, a darker inner ring and a highlight.

    Args:
        rng: Source of randomness.
        image: float32 RGB image in ``[0, 1]``.

    Shape:
        image: ``(H, W, 3)``.
    """
    height, width = image.shape[:2]
    n = int(rng.integers(1, 12))
    cluster = rng.uniform((0, 0), (width, height))
    spread = rng.uniform(0.1, 0.4) * width
    for _ in range(n):
        radius = float(np.clip(rng.lognormal(np.log(0.03 * width), 0.6), 1.5, 0.2 * width))
        cx, cy = cluster + rng.normal(0, spread, 2)
        x0, x1 = int(max(0, cx - radius - 2)), int(min(width, cx + radius + 3))
        y0, y1 = int(max(0, cy - radius - 2)), int(min(height, cy + radius + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        y, x = np.ogrid[y0:y1, x0:x1]
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2, dtype=np.float32)
        rim_w = max(0.6, 0.08 * radius)
        rim = np.exp(-(((r - radius) / rim_w) ** 2))
        inner = np.exp(-(((r - radius + 2.2 * rim_w) / rim_w) ** 2))
        hx, hy = cx - 0.4 * radius, cy - 0.4 * radius
        spot = np.exp(-((x - hx) ** 2 + (y - hy) ** 2) / max(0.5, (0.18 * radius) ** 2))
        inside = (r < radius).astype(np.float32)
        patch = image[y0:y1, x0:x1]
        patch *= (1.0 + 0.06 * inside - 0.25 * inner)[..., None]
        bright = np.clip(0.8 * rim + 0.95 * spot, 0.0, 1.0)[..., None]
        patch += bright * (0.97 - patch)
