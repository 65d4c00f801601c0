"""Input transforms of the papers, as fastai batch transforms (they run on the GPU).

* :mod:`~lessons_lib.transforms.colour`: RGB + HSV + CIELAB-lightness input channels (CDNN-29);
* :mod:`~lessons_lib.transforms.contrast`: random per-channel contrast stretching (CDNN-29);
* :mod:`~lessons_lib.transforms.geometric`: flips, shifts, rotations and scaling as one affine
  warp (CDNN-29);
* :mod:`~lessons_lib.transforms.standardize`: TensorFlow's per-image standardisation
  (LesionSeg).
"""

from lessons_lib.transforms.colour import (
    CHANNEL_NAMES,
    CDNNChannels,
    rgb_to_cdnn7,
    rgb_to_hsv,
    rgb_to_lab_lightness,
)
from lessons_lib.transforms.contrast import (
    RandomChannelContrast,
    percentile_stretch,
    random_channel_contrast,
)
from lessons_lib.transforms.geometric import FlipVert, Shift, geometric_augment
from lessons_lib.transforms.standardize import PerImageStandardize, per_image_standardization

__all__ = [
    "CHANNEL_NAMES",
    "CDNNChannels",
    "FlipVert",
    "PerImageStandardize",
    "RandomChannelContrast",
    "Shift",
    "geometric_augment",
    "percentile_stretch",
    "per_image_standardization",
    "random_channel_contrast",
    "rgb_to_cdnn7",
    "rgb_to_hsv",
    "rgb_to_lab_lightness",
]
