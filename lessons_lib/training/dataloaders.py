"""fastai DataLoaders for (image, mask) file pairs: the data pipeline of every chapter.

Images are squished to the network's input size (as the papers resize); a paper's augmentation
and input channels are batch transforms passed in by the chapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from fastai.data.block import DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, Normalize
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage, PILMask, imagenet_stats
from fastai.vision.data import ImageBlock, MaskBlock

from lessons_lib.data.io import read_mask

Pair = tuple[Path, Path]
CODES = ["skin", "lesion"]


def load_mask01(path: Path | str) -> PILMask:
    """A mask file as a fastai ``PILMask`` with values 0 (skin) and 1 (lesion)."""
    return PILMask.create(read_mask(path).astype(np.uint8))


def segmentation_dls(
    train: Sequence[Pair],
    valid: Sequence[Pair],
    size: int | tuple[int, int],
    bs: int,
    aug: Sequence | None = None,
    extra_tfms: Sequence = (),
    normalize: tuple | None = imagenet_stats,
    num_workers: int | None = None,
    seed: int | None = None,
) -> DataLoaders:
    """fastai DataLoaders for (image, mask) file pairs, images squished to ``size``.

    Args:
        train: Training pairs (usually from :meth:`PreparedData.pairs`).
        valid: Validation pairs.
        size: Square side, or ``(height, width)``, of the network input.
        bs: Batch size.
        aug: Batch augmentations for the training set (e.g. fastai ``aug_transforms``).
        extra_tfms: Further batch transforms (e.g. colour-space channels), before normalising.
        normalize: ``(mean, std)`` per channel, ``None`` for none.
        num_workers: Loader processes; default 0 on a CPU, up to 8 with a GPU.
        seed: Seed of the shuffling.

    Returns:
        ``DataLoaders`` whose batches are ``(TensorImage (N,3,H,W), TensorMask (N,H,W))``.

    Raises:
        DataError: an empty split, or fewer training images than one batch (the message says
            how many each split has and which batch size would do).
    """
    from lessons_lib.errors import DataError

    if not train or not valid:
        raise DataError(f"empty split: {len(train)} training and {len(valid)} validation pairs")
    if len(train) < bs:
        raise DataError(
            f"the training split has {len(train)} image(s) (validation: {len(valid)}), fewer "
            f"than one batch of {bs}: fastai drops an incomplete last batch, so training would "
            "see no batch at all",
            fix=f"lower the batch size to at most {len(train)} (papermill: -p batch_size "
            f"{len(train)}, a list per stage where the chapter has stages), or train on more "
            "images",
        )
    items = [image for image, _ in list(train) + list(valid)]
    batch_tfms = list(aug or []) + list(extra_tfms)
    if normalize is not None:
        batch_tfms.append(Normalize.from_stats(*normalize))
    block = DataBlock(
        blocks=(ImageBlock(PILImage), MaskBlock(CODES)),
        get_y=_MaskOf({image: mask for image, mask in list(train) + list(valid)}),
        splitter=IndexSplitter(list(range(len(train), len(items)))),
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=batch_tfms,
    )
    if num_workers is None:
        num_workers = min(8, torch.get_num_threads()) if torch.cuda.is_available() else 0
    return block.dataloaders(items, bs=bs, num_workers=num_workers, seed=seed)


class _MaskOf:
    """Picklable ``get_y``: an image's mask, read as a 0/1 ``PILMask``.

    (Items are image paths, not ``(image, mask)`` tuples: fastai transforms map over
    tuples element by element.)
    """

    def __init__(self, masks: dict[Path, Path]):
        self.masks = masks

    def __call__(self, image: Path) -> PILMask:
        return load_mask01(self.masks[image])
