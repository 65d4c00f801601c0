"""Model registry: build any chapter's network by name.

One module per network, named after it (``cdnn29``, ``resnet34_unet``, ``lesionseg``,
``slsdeep``, ``vgg16_fcn``), registers its builder with :func:`register`; :func:`build_model`
builds it by name and, for an unknown name or argument, lists the valid ones (the
segmentation_models.pytorch convention). Builders take keyword arguments only, at least
``in_channels`` and ``n_out``; ``pretrained`` where an ImageNet encoder exists
(:mod:`~lessons_lib.models.pretrained`). :mod:`~lessons_lib.models.complexity` counts
parameters and FLOPs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from lessons_lib.models.complexity import count_flops, count_parameters

__all__ = ["MODELS", "build_model", "count_flops", "count_parameters", "register"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model builder to :data:`MODELS` under ``name``."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = builder
        return builder

    return add


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: Registry key, e.g. ``"resnet34_unet"`` or ``"cdnn29"``.
        **kwargs: Passed to the builder (``in_channels``, ``n_out``, ``pretrained``, ...).

    Returns:
        The model, on the CPU, with ``model.build_spec = {"name": name, "kwargs": {...}}``: how
        to build it again (what :mod:`lessons_lib.evaluation.predict` records). ``pretrained``
        is recorded as ``False``: a rebuilt model gets trained weights loaded into it, so it
        must not download initial ones.

    Raises:
        KeyError: unknown name (the message lists every valid name).
    """
    _load_all()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    builder = MODELS[name]
    valid = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"{name}: unknown argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    model = builder(**kwargs)
    recorded = dict(kwargs)
    if "pretrained" in valid:
        recorded["pretrained"] = False
    model.build_spec = {"name": name, "kwargs": recorded}
    return model


def _load_all() -> None:
    """Import every model module so that its ``@register`` lines run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
