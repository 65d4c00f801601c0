"""Segmentation losses of the five reproduced papers, each a module with a functional twin.

=====================  ====================  ========================================
function               module                paper
=====================  ====================  ========================================
``cross_entropy_2d``   ``CrossEntropy2d``    Ramachandram & DeVries 2017; Qi et al. 2017
``bce_with_logits``    ``BCEWithLogits2d``   Raghunath & Nofallah 2018
``jaccard_distance``   ``JaccardDistance``   Yuan & Lo 2017, Eq. (1)
``nll_epe``, ``epe``   ``NLLEPELoss``        Sarker et al. 2018, Eqs. (1)-(3)
=====================  ====================  ========================================

Every loss is a :class:`~lessons_lib.losses.base.SegmentationLoss`: it declares how the
network's output becomes a probability (``output_activation``: ``sigmoid``, ``softmax`` or
``none``), refuses outputs whose channel count does not fit, and works as a fastai ``loss_func``
(``activation``, ``decodes`` and the ``reduction`` fastai sets in ``get_preds``). The loss is
computed per image, then reduced over the batch by ``reduction`` (``"mean"``, ``"sum"`` or
``"none"``).

Layout: :mod:`~lessons_lib.losses.base` (the contract), :mod:`~lessons_lib.losses.cross_entropy`
(CE, BCE), :mod:`~lessons_lib.losses.jaccard`, :mod:`~lessons_lib.losses.nll_epe` (NLL + EPE);
every public name is re-exported here, with the :data:`LOSSES` registry and :func:`get_loss`.
"""

from __future__ import annotations

from torch import nn

from lessons_lib.losses.base import SegmentationLoss, activate, foreground
from lessons_lib.losses.cross_entropy import (
    BCEWithLogits2d,
    CrossEntropy2d,
    bce_with_logits,
    cross_entropy_2d,
)
from lessons_lib.losses.jaccard import JaccardDistance, jaccard_distance
from lessons_lib.losses.nll_epe import NLLEPELoss, epe, nll_epe

__all__ = [
    "LOSSES",
    "BCEWithLogits2d",
    "CrossEntropy2d",
    "JaccardDistance",
    "NLLEPELoss",
    "SegmentationLoss",
    "activate",
    "foreground",
    "bce_with_logits",
    "cross_entropy_2d",
    "epe",
    "get_loss",
    "jaccard_distance",
    "nll_epe",
]


# ----------------------------------------------------------------------------- registry
LOSSES: dict[str, type[nn.Module]] = {
    "cross_entropy": CrossEntropy2d,
    "bce_with_logits": BCEWithLogits2d,
    "jaccard_distance": JaccardDistance,
    "nll_epe": NLLEPELoss,
}


def get_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a loss by its name in :data:`LOSSES`.

    Args:
        name: One of ``LOSSES``' keys, e.g. ``"jaccard_distance"``.
        **kwargs: Passed to the loss class, e.g. ``alpha=0.5`` for ``"nll_epe"``.

    Returns:
        The loss module.

    Raises:
        ValueError: ``name`` is unknown; the message lists the valid names.
    """
    try:
        cls = LOSSES[name]
    except KeyError:
        valid = ", ".join(sorted(LOSSES))
        raise ValueError(f"unknown loss {name!r}; valid names: {valid}") from None
    return cls(**kwargs)
