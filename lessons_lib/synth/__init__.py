"""Synthetic dermoscopy images with exact lesion masks: the course's built-in data.

Every chapter runs on these images on a CPU in CI, so they look like dermoscopy, make
segmentation non-trivial and stay learnable::

    from lessons_lib.synth import SynthConfig, generate, make_dataset
    image, mask = generate(seed=3, config=SynthConfig.only("hair"))
    root = make_dataset("data/synth", n=40, size=256, seed=0)

* :mod:`~lessons_lib.synth.image`: one image and its mask (:func:`generate`), each nuisance a
  field of :class:`SynthConfig`;
* :mod:`~lessons_lib.synth.lesion`: skin and lesion rendering (a small optical model);
* :mod:`~lessons_lib.synth.draw`: acquisition artefacts (hair, ruler, chart, bubbles, light);
* :mod:`~lessons_lib.synth.dataset`: a whole archive in the ISIC 2017 layout
  (:func:`make_dataset`).
"""

from lessons_lib.synth.dataset import (
    FORMAT_VERSION,
    SPLIT_NAMES,
    default_count,
    make_dataset,
)
from lessons_lib.synth.image import MIN_SIDE, SynthConfig, generate

__all__ = [
    "FORMAT_VERSION",
    "MIN_SIDE",
    "SPLIT_NAMES",
    "SynthConfig",
    "default_count",
    "generate",
    "make_dataset",
]
