"""One synthetic dermoscopy image and its mask: :class:`SynthConfig` and :func:`generate`.

Each nuisance the papers name is a field of
:class:`SynthConfig`, so the book can switch them on one at a time::

    image, mask = generate(seed=3)                                   # everything on
    image, mask = generate(seed=3, config=SynthConfig.only("hair"))  # hair only
    image, mask = generate(seed=3, config=SynthConfig.none())        # clean

Image nuisances (:attr:`SynthConfig.NUISANCES`) never change the mask: for a given seed the
mask is the same whatever they are set to (hair over the lesion stays lesion, as in the ISIC
ground truth). The two lesion factors (:attr:`SynthConfig.LESION_FACTORS`: irregular border
and lesion size) change the lesion itself, hence the mask.

Each component draws from its own random stream, ``default_rng([seed, stream])``, so
switching one nuisance on or off never changes what the others draw.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from lessons_lib.errors import DataError
from lessons_lib.synth.draw import (
    composite,
    draw_bubbles,
    draw_colour_chart,
    hair_layer,
    illumination,
    ruler_layer,
    vignette,
)
from lessons_lib.synth.lesion import lesion_geometry, paint_lesion, skin

# One random stream per component: never renumber (it would change every image).
SHAPE, TONE, SKIN, CONTRAST, LESION, HAIR, BUBBLES, RULER, LIGHT, FRAME, CHART, NOISE = range(12)
MIN_SIDE = 16


@dataclass(frozen=True)
class SynthConfig:
    """Which nuisances :func:`generate` draws, and how often or how strongly.

    Probabilities are per image; strengths scale a randomly drawn amount (0 switches the
    nuisance off, 1 is the full range). All values must lie in ``[0, 1]``.

    Args:
        skin_tone: Strength: 0 = one light skin tone; 1 = light to dark skin.
        illumination: Probability of uneven illumination (a smooth gradient and hot spot).
        vignette: Probability of the dark dermoscope vignette / circular black frame.
        fuzzy_border: Strength of the border blur (how wide and ragged the fade is).
        colour_variation: Strength of the internal brown / black / blue-grey blotches.
        low_contrast: Probability that the lesion is only faintly darker than the skin.
        hair: Probability of hairs (thin dark curved lines).
        ruler: Probability of ruler tick marks near an edge.
        colour_chart: Probability of colour-calibration squares in a corner.
        bubbles: Probability of gel / air bubbles (bright circles with highlights).
        irregular_border: Strength of the star-shaped radial noise of the border
            (lesion factor: changes the mask). 0 gives smooth ellipses.
        lesion_size: Strength of the size spread (lesion factor: changes the mask). 0 gives
            centred lesions of about 18 % of the image; 1 ranges from tiny to most of the
            field, some touching or crossing the image border.
    """

    skin_tone: float = 1.0
    illumination: float = 0.6
    vignette: float = 0.3
    fuzzy_border: float = 1.0
    colour_variation: float = 1.0
    low_contrast: float = 0.15
    hair: float = 0.4
    ruler: float = 0.25
    colour_chart: float = 0.1
    bubbles: float = 0.2
    irregular_border: float = 1.0
    lesion_size: float = 1.0

    NUISANCES: ClassVar[tuple[str, ...]] = (
        "skin_tone",
        "illumination",
        "vignette",
        "fuzzy_border",
        "colour_variation",
        "low_contrast",
        "hair",
        "ruler",
        "colour_chart",
        "bubbles",
    )
    LESION_FACTORS: ClassVar[tuple[str, ...]] = ("irregular_border", "lesion_size")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise DataError(
                    f"SynthConfig.{field.name} = {value!r} is not a number in [0, 1]",
                    fix="use 0 to switch it off, 1 for always / full strength",
                )

    @classmethod
    def none(cls) -> SynthConfig:
        """Clean images: every nuisance and lesion factor off."""
        return cls(**{name: 0.0 for name in cls.NUISANCES + cls.LESION_FACTORS})

    @classmethod
    def only(cls, *names: str) -> SynthConfig:
        """Only the named nuisances / lesion factors, each always on at full strength.

        Args:
            *names: Names from :attr:`NUISANCES` or :attr:`LESION_FACTORS`.

        Returns:
            A config with the named fields at 1.0 and every other one at 0.0.
        """
        known = cls.NUISANCES + cls.LESION_FACTORS
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(f"unknown nuisance(s) {unknown}", fix=f"choose from {list(known)}")
        return dataclasses.replace(cls.none(), **{name: 1.0 for name in names})

    def to_dict(self) -> dict[str, float]:
        """Plain dict of every field (what ``synth.json`` stores)."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`DataError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(values) - names)
        if extra:
            raise DataError(f"unknown SynthConfig field(s) {extra}", fix=f"use {sorted(names)}")
        return cls(**values)


def _check_args(seed: int, width: int, height: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}", fix="pass seed>=0")
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int | np.integer) or side < MIN_SIDE:
            raise DataError(
                f"{name} must be an integer >= {MIN_SIDE}, got {side!r}",
                fix=f"ask for images of at least {MIN_SIDE}x{MIN_SIDE} pixels",
            )


def _main_region(inside: np.ndarray) -> np.ndarray:
    """The largest connected region of ``inside`` with its holes filled, as a 0/255 mask.

    Like ISIC annotators, the mask outlines one lesion and ignores detached specks.
    """
    labels, count = ndimage.label(inside)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        inside = labels == 1 + int(np.argmax(sizes))
    inside = ndimage.binary_fill_holes(inside)
    return np.where(inside, 255, 0).astype(np.uint8)


def generate(
    seed: int, width: int = 256, height: int | None = None, config: SynthConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic dermoscopy image and its lesion mask.

    Args:
        seed: Non-negative integer; the same seed (and arguments) gives identical bytes.
        width: Image width in pixels.
        height: Image height; defaults to ``round(width * 3 / 4)`` (ISIC images are 4:3).
        config: Which nuisances to draw; defaults to ``SynthConfig()`` (all, at the
            default rates).

    Shape:
        image: ``(height, width, 3)``; mask: ``(height, width)``.

    Returns:
        ``(image, mask)``: RGB ``uint8`` image and ``uint8`` mask with values 0 / 255.

    Raises:
        DataError: On a negative seed or a side shorter than 16 pixels.
    """
    cfg = config if config is not None else SynthConfig()
    h = round(width * 3 / 4) if height is None else height
    _check_args(seed, width, h)
    w, seed = int(width), int(seed)

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, stream])

    sd, radius = lesion_geometry(rng(SHAPE), h, w, cfg.irregular_border, cfg.lesion_size)
    mask = _main_region(sd > 0)

    tone = 0.1 + cfg.skin_tone * (rng(TONE).beta(1.0, 2.6) - 0.1)
    image = skin(rng(SKIN), h, w, tone)
    r = rng(CONTRAST)
    low, faint, normal = r.random() < cfg.low_contrast, r.uniform(0.12, 0.3), r.lognormal(0, 0.3)
    contrast = faint if low else float(np.clip(normal, 0.5, 2.0))
    paint_lesion(image, sd, radius, rng(LESION), contrast, cfg.fuzzy_border, cfg.colour_variation)

    for stream, prob, layer in ((HAIR, cfg.hair, hair_layer), (RULER, cfg.ruler, ruler_layer)):
        r = rng(stream)
        if r.random() < prob:
            alpha, colour = layer(r, h, w)
            composite(image, alpha, colour)
    r = rng(BUBBLES)
    if r.random() < cfg.bubbles:
        draw_bubbles(r, image)
    r = rng(LIGHT)
    if r.random() < cfg.illumination:
        image *= illumination(r, h, w, r.uniform(0.5, 1.0))[..., None]
    r = rng(FRAME)
    if r.random() < cfg.vignette:
        image *= vignette(r, h, w)[..., None]
    r = rng(CHART)
    if r.random() < cfg.colour_chart:
        draw_colour_chart(r, image)
    image += 0.008 * rng(NOISE).standard_normal((h, w, 1), dtype=np.float32)  # sensor noise
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), mask
