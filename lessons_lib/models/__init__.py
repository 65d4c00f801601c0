"""Model registry: build any chapter's network by name.

Each chapter registers its architecture under a short name with :func:`register`;
:func:`build_model` builds it and, for an unknown name, lists the valid ones (the
segmentation_models.pytorch convention). Builders take keyword arguments only, at least
``in_channels`` and ``n_out``; ``pretrained`` where an ImageNet encoder exists.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

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
        The model, on the CPU.

    Raises:
        KeyError: unknown name (the message lists every valid name).
    """
    _load_all()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def _load_all() -> None:
    """Import every model module so that its ``@register`` lines run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
