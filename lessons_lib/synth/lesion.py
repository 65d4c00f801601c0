"""Skin and lesion rendering for the synthetic dermoscopy generator (:mod:`lessons_lib.synth`).

Colours follow a tiny optical model: the image is a light "bare skin" colour attenuated by
pigments, ``rgb = base * exp(-density * absorbance)``. Melanin absorbs blue and green more
than red (brown), haemoglobin absorbs green (pink / red). The lesion adds melanin density,
so it is darker than the skin around it on average, by an amount set by the contrast.

The lesion geometry is a signed distance field ``sd`` in pixels (positive inside); the mask
is exactly ``sd > 0``, whatever the image rendering does with it.
"""

from __future__ import annotations

import numpy as np

from lessons_lib.synth.draw import RNG, composite, smooth_noise

MELANIN = np.array([0.62, 0.98, 1.25], dtype=np.float32)
HAEMOGLOBIN = np.array([0.12, 1.0, 0.7], dtype=np.float32)
BARE_PINK = np.array([0.96, 0.8, 0.77], dtype=np.float32)
BARE_BEIGE = np.array([0.95, 0.84, 0.72], dtype=np.float32)
BLUE_GREY = np.array([0.42, 0.47, 0.58], dtype=np.float32)
REGRESSION = np.array([0.88, 0.8, 0.8], dtype=np.float32)
N_HARMONICS = 32
TABLE = 1024


def lesion_geometry(
    rng: RNG, height: int, width: int, irregular: float, size: float
) -> tuple[np.ndarray, float]:
    """Signed distance field of a star-shaped lesion with a wobbly, noisy border.

    All random numbers are drawn whatever the strengths, so the strengths only scale them.

    Args:
        rng: Source of randomness (dedicated to the shape).
        height: Image height.
        width: Image width.
        irregular: 0 gives a smooth ellipse; 1 gives fully irregular borders.
        size: 0 gives a centred lesion of about 18 % of the image; 1 spreads the area from
            tiny (0.4 %) to most of the field and moves the centre so some lesions cross
            the image border.

    Shape:
        sd: ``(height, width)``.

    Returns:
        ``(sd, radius)``: signed distance in pixels (positive inside) and the base radius.
    """
    u_area, elong, rot, wild = (
        rng.random(),
        rng.uniform(1.0, 1.7),
        rng.uniform(0, np.pi),
        rng.random(),
    )
    offset = rng.uniform(-0.2, 0.2, 2)
    jitter = rng.uniform(-0.04, 0.04, 2)
    amps = rng.standard_normal(N_HARMONICS - 1) * np.arange(2, N_HARMONICS + 1) ** -1.15
    phases = rng.uniform(0, 2 * np.pi, N_HARMONICS - 1)
    rough = smooth_noise(rng, height, width, max(3.0, width / 28))

    area = (1 - size) * 0.18 + size * (0.004 + 0.9 * u_area**2)
    radius = float(np.sqrt(area * height * width / np.pi))
    cx = width * (0.5 + jitter[0] + size * offset[0])
    cy = height * (0.5 + jitter[1] + size * offset[1])
    theta_tab = np.linspace(-np.pi, np.pi, TABLE)
    k = np.arange(2, N_HARMONICS + 1)[:, None]
    wobble = (amps[:, None] * np.cos(k * theta_tab + phases[:, None])).sum(0)
    r_tab = np.clip(1.0 + irregular * (0.15 + 0.3 * wild) * wobble, 0.3, None)

    y, x = np.ogrid[:height, :width]
    dx, dy = (x - cx).astype(np.float32), (y - cy).astype(np.float32)
    c, s, e = np.cos(rot), np.sin(rot), np.sqrt(elong)
    u = (dx * c + dy * s) / e
    v = (dy * c - dx * s) * e
    rho = np.sqrt(u * u + v * v)
    rt = np.interp(np.arctan2(v, u), theta_tab, r_tab).astype(np.float32)
    sd = radius * rt - rho
    sd += irregular * (0.02 + 0.05 * wild) * radius * np.clip(rough, -2.5, 2.5)
    return sd.astype(np.float32), radius


def skin(rng: RNG, height: int, width: int, tone: float) -> np.ndarray:
    """Bare skin: tone-dependent melanin, pink erythema patches and fine texture.

    Args:
        rng: Source of randomness (dedicated to the skin).
        height: Image height.
        width: Image width.
        tone: 0 = very light, 1 = dark skin.

    Shape:
        Output: ``(height, width, 3)``.

    Returns:
        float32 RGB image in ``[0, 1]``.
    """
    hue = rng.uniform(0.0, 1.0)
    base = (1 - hue) * BARE_PINK + hue * BARE_BEIGE
    red = rng.uniform(0.03, 0.22)
    m = 1.6 * tone**1.6 * (1 + 0.08 * smooth_noise(rng, height, width, width / 4))
    h = red * np.clip(1 + 0.45 * smooth_noise(rng, height, width, width / 3), 0, None)
    fine = 0.015 * smooth_noise(rng, height, width, 2.5)
    fine += 0.02 * smooth_noise(rng, height, width, width / 30)
    density = m[..., None] * MELANIN + h[..., None] * HAEMOGLOBIN
    return base * np.exp(-density) * (1 + fine[..., None])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def paint_lesion(
    image: np.ndarray,
    sd: np.ndarray,
    radius: float,
    rng: RNG,
    contrast: float,
    fuzzy: float,
    variation: float,
) -> None:
    """Darken the lesion region of ``image`` in place with pigment, network and blotches.

    Args:
        image: Skin image, float32 RGB in ``[0, 1]``, modified in place.
        sd: Signed distance field from :func:`lesion_geometry`.
        radius: Base radius from :func:`lesion_geometry`.
        rng: Source of randomness (dedicated to the lesion colours).
        contrast: Melanin density at the lesion centre (0.15 faint ... 2 very dark).
        fuzzy: 0 gives an antialiased sharp edge; 1 gives a wide, ragged fade.
        variation: 0 gives a uniform brown; 1 adds black, blue-grey and pale blotches.

    Shape:
        image: ``(H, W, 3)``; sd: ``(H, W)``.
    """
    height, width = sd.shape
    fade = rng.uniform(0.03, 0.2) * radius
    ragged = np.clip(smooth_noise(rng, height, width, max(2.0, width / 60)), -3, 3)
    net = smooth_noise(rng, height, width, max(2.0, width / 70))
    net_amount = rng.uniform(0.1, 0.45)
    red = rng.beta(0.5, 5.0)
    blobs = [smooth_noise(rng, height, width, max(3.0, radius / c)) for c in (4, 2.5, 2)]
    present = rng.random(3) < (0.8, 0.5, 0.4)
    present[0] |= not present.any()  # at least one kind of blotch
    amount = rng.uniform(0.4, 1.0, 3) * present * variation

    width_px = 0.6 + fuzzy * fade
    margin = width_px + fuzzy * 0.35 * fade * 3 + 1
    near = sd > -margin  # work on the lesion's bounding box only
    rows, cols = np.flatnonzero(near.any(1)), np.flatnonzero(near.any(0))
    if rows.size == 0:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    sd, ragged, net, blobs = sd[box], ragged[box], net[box], [b[box] for b in blobs]
    crop = image[box]

    alpha = _smoothstep((sd + fuzzy * 0.35 * fade * ragged) / (2 * width_px) + 0.5)
    inner = _smoothstep(sd / (0.6 * radius + 1e-6))
    network = np.exp(-((net / 0.3) ** 2))
    absorb = (1 - red) * MELANIN + red * HAEMOGLOBIN
    density = contrast * alpha * (0.6 + 0.4 * inner) * (1 + net_amount * (network - 0.3))
    dark = _smoothstep((blobs[0] - 0.4) / 1.4) * inner
    density += amount[0] * 1.3 * contrast * dark * alpha
    crop *= np.exp(-density[..., None] * absorb)

    grey = _smoothstep((blobs[1] - 0.7) / 0.9) * alpha * amount[1] * 0.45
    pale = _smoothstep((blobs[2] - 0.8) / 1.2) * alpha * inner * amount[2] * 0.28
    level = crop.mean(-1, keepdims=True)
    composite(crop, grey * min(1.0, contrast), BLUE_GREY * np.clip(level * 1.6, 0.2, 0.9))
    composite(crop, pale * min(1.0, contrast), REGRESSION)
