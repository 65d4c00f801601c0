"""The chapters' full profiles as the benchmarks need them: network, input sizes, augmentation.

Sizes, batch sizes and network settings are read from each notebook's ``PROFILES["full"]``;
the network's registry arguments and the data pipeline (augmentation and batch transforms)
mirror the chapter's own cells, which remain the reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def full_profile(chapter: str) -> dict:
    """``PROFILES["full"]`` of ``notebooks/<chapter>.ipynb``."""
    notebook = json.loads((NOTEBOOKS / f"{chapter}.ipynb").read_text())
    sources = ("".join(cell["source"]) for cell in notebook["cells"])
    namespace: dict = {}
    exec(next(s for s in sources if s.startswith("PROFILES = ")), namespace)
    return namespace["PROFILES"]["full"]


@dataclass
class Chapter:
    """One chapter's full profile: its network and how it trains.

    Args:
        chapter: Notebook stem.
        model: Registry name and keyword arguments of the network.
        stages: ``((height, width), batch size)`` of each training resolution.
        prepare_size: Shorter side of the prepared cache the loaders read.
        aug: Builds the training augmentation (fastai batch transforms).
        extra_tfms: Builds the further batch transforms (colour channels, standardisation).
        imagenet: Normalise with ImageNet statistics (``segmentation_dls``'s default).
        in_channels: Network input channels.
    """

    chapter: str
    model: tuple[str, dict]
    stages: list[tuple[tuple[int, int], int]]
    prepare_size: int
    aug: Callable[[], list] = list
    extra_tfms: Callable[[], list] = list
    imagenet: bool = True
    in_channels: int = 3

    def build(self):
        """The network on the ``meta`` device (shapes only)."""
        import torch

        from lessons_lib.models import build_model

        name, kwargs = self.model
        with torch.device("meta"):
            return build_model(name, **kwargs)


def chapters() -> list[Chapter]:
    """The five chapters' full profiles."""
    from fastai.vision.augment import Dihedral, aug_transforms

    from lessons_lib.transforms import (
        CDNNChannels,
        PerImageStandardize,
        RandomChannelContrast,
        geometric_augment,
    )

    p0, p1, p2, p3, p4 = (
        full_profile(c)
        for c in (
            "000_lesionseg",
            "001_cdnn29",
            "002_resnet34_unet",
            "003_slsdeep",
            "004_vgg16_fcn",
        )
    )
    contrast = [RandomChannelContrast] if p1["contrast_aug"] else []
    return [
        Chapter(
            "000_lesionseg",
            ("lesionseg", dict(n_out=2, reading=p0["reading"], upsample=p0["upsample"])),
            [((p0["size"],) * 2, p0["batch_size"])],
            p0["size"],
            aug=lambda: [Dihedral(p=1.0)],
            extra_tfms=lambda: [PerImageStandardize()],
            imagenet=False,
        ),
        Chapter(
            "001_cdnn29",
            ("cdnn29", dict(in_channels=7 if p1["channels"] == "rgbhsvl" else 3)),
            [(tuple(p1["size"]), p1["batch_size"])],
            p1["size"][0],
            aug=geometric_augment,
            extra_tfms=lambda: [CDNNChannels(p1["channels"])] + [t() for t in contrast],
            imagenet=False,
            in_channels=7 if p1["channels"] == "rgbhsvl" else 3,
        ),
        Chapter(
            "002_resnet34_unet",
            ("resnet34_unet", dict(n_out=1, img_size=(p2["sizes"][0],) * 2)),
            [((s, s), bs) for s, bs in zip(p2["sizes"], p2["batch_size"], strict=True)],
            max(p2["sizes"]),
            aug=lambda: aug_transforms(
                max_rotate=10.0, max_lighting=0.2, flip_vert=True, max_zoom=1.0, max_warp=0.0
            ),
        ),
        Chapter(
            "003_slsdeep",
            ("slsdeep", dict(n_out=2, ppn_width=p3["ppn_width"], skips=p3["skips"])),
            [((p3["size"],) * 2, p3["batch_size"])],
            p3["size"],
            aug=lambda: aug_transforms(
                max_rotate=p3["max_rotate"],
                min_zoom=p3["min_zoom"],
                max_zoom=p3["max_zoom"],
                do_flip=False,
                max_lighting=0.0,
                max_warp=0.0,
                p_affine=1.0,
                pad_mode="zeros",
            ),
        ),
        Chapter(
            "004_vgg16_fcn",
            ("vgg16_fcn", dict(n_out=2, fusion=p4["fusion"], deconv_init=p4["deconv_init"])),
            [((p4["size"],) * 2, p4["batch_size"])],
            p4["size"],
            aug=lambda: (
                aug_transforms(
                    flip_vert=True, max_rotate=10.0, max_zoom=1.0, max_lighting=0.0, max_warp=0.0
                )
                if p4["augment"]
                else []
            ),
        ),
    ]
