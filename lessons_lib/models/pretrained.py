"""ImageNet weights for the torchvision encoders of the chapters' networks.

Every network with an ImageNet encoder (ResNet34 U-Net, SLSDeep's ResNet-50, the VGG16 FCN)
takes the same ``pretrained`` argument, resolved here:

* ``True``: torchvision's ImageNet weights, downloaded on first use into torch's cache
  (``~/.cache/torch/hub/checkpoints``). Offline, a warning says so and names the file to pass
  instead, and the network starts from random weights (the fallback is recorded in the
  model's ``weights_source``);
* a path: a local copy of those weights (a ``state_dict``, optionally under ``"state_dict"``);
* ``False``: random initialisation.

:func:`check_pretrained` checks a ``pretrained`` value before any work is done (a chapter's
:func:`lessons_lib.params.resolve` calls it): a path must hold a ``state_dict``, and
``True`` in any profile but ``smoke`` must be able to get the weights (already in torch's cache,
or the download server answers), so that a laptop, Colab or full run never trains a "pretrained"
network from scratch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

Pretrained = bool | str | Path

# torchvision's weight enums and the file each downloads (for the offline message).
WEIGHTS = {
    "resnet34": ("ResNet34_Weights.IMAGENET1K_V1", "resnet34-b627a593.pth"),
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V1", "resnet50-0676ba61.pth"),
    "vgg16": ("VGG16_Weights.IMAGENET1K_V1", "vgg16-397923af.pth"),
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file's ``state_dict``, read without unpickling arbitrary objects.

    Raises:
        ValueError: the file is missing or holds no ``state_dict`` (the message names it).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(
            f"pretrained={str(path)!r} is a folder. Pass the path of a torchvision ImageNet "
            "weights file inside it (e.g. resnet34-b627a593.pth), True to download it, or False "
            "to train from scratch."
        )
    if not path.is_file():
        raise ValueError(
            f"pretrained={str(path)!r}: no such file. Pass the path of a torchvision ImageNet "
            "weights file, True to download it, or False to train from scratch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"pretrained={str(path)!r} is not a PyTorch weights file ({type(err).__name__}). "
            "Pass a torchvision ImageNet weights file (a saved state_dict)."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"pretrained={str(path)!r} holds no state_dict (a mapping of parameter names to "
            "tensors). Pass a torchvision ImageNet weights file."
        )
    return state


def load_imagenet(model: nn.Module, arch: str, pretrained: Pretrained) -> str:
    """Load ImageNet weights into a torchvision ``model`` of architecture ``arch``.

    Args:
        model: A torchvision network built with ``weights=None`` (modified in place).
        arch: A key of :data:`WEIGHTS` (``resnet34``, ``resnet50``, ``vgg16``).
        pretrained: ``True``, a path to a local weights file, or ``False`` (see the module).

    Returns:
        A sentence saying where the weights came from (recorded in ``metrics.json``).

    Raises:
        ValueError: ``arch`` is unknown, or ``pretrained`` names a missing or invalid file.
    """
    if arch not in WEIGHTS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(WEIGHTS)}")
    enum, filename = WEIGHTS[arch]
    if isinstance(pretrained, (str, Path)):
        model.load_state_dict(read_state_dict(pretrained))
        return f"ImageNet weights from {pretrained}"
    if not pretrained:
        return "random initialisation (trained from scratch)"
    from torchvision.models import get_weight

    try:
        model.load_state_dict(get_weight(enum).get_state_dict(progress=False))
        return f"ImageNet weights (torchvision {enum})"
    except Exception as err:  # offline, proxy, corrupt download
        warnings.warn(
            f"could not load ImageNet weights ({type(err).__name__}: {err}); the encoder is "
            f"trained from scratch. Pass pretrained=<path to {filename}> to use a local copy of "
            "torchvision's file.",
            stacklevel=3,
        )
    return "random initialisation (ImageNet weights could not be downloaded)"


def weights_url(arch: str) -> str:
    """The address torchvision downloads ``arch``'s ImageNet weights from."""
    from torchvision.models import get_weight

    return get_weight(WEIGHTS[arch][0]).url


def cached_weights(arch: str) -> Path:
    """Where torchvision keeps ``arch``'s downloaded weights (the file may not exist yet):
    ``<torch.hub.get_dir()>/checkpoints/<file>`` (``$TORCH_HOME`` moves it)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS[arch][1]


def download_problem(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url`` cannot be downloaded now (a HEAD request), or ``None`` if the server answers.

    Honours the usual proxy variables (``https_proxy``, ...), like torchvision's download.
    """
    import urllib.request

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "lessons_lib"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except Exception as err:  # offline, DNS, proxy, TLS, HTTP error status
        return f"{type(err).__name__}: {err}"


def check_pretrained(
    pretrained: Pretrained,
    arch: str | None = None,
    require: bool = False,
    timeout: float = 5.0,
) -> None:
    """Check a ``pretrained`` argument before a run does any work.

    Args:
        pretrained: ``True``, a path to a local weights file, or ``False`` (see the module).
        arch: The :data:`WEIGHTS` key the network loads; ``None`` when it is not known (then
            ``True`` is taken as obtainable if the server answers or every file is cached).
        require: ``True`` (a laptop, Colab or full run): ``pretrained=True`` must be able to
            get the weights, from torch's cache or by download. ``False`` (a smoke run) keeps
            the offline fallback of :func:`load_imagenet`, recorded in the model's
            ``weights_source``.
        timeout: Seconds the reachability check waits for the download server.

    Raises:
        ValueError: a path that is missing or holds no ``state_dict``; ``True`` with
            ``require`` and no way to get the weights (the message says how to pass a file).
    """
    if isinstance(pretrained, (str, Path)):
        read_state_dict(pretrained)
        return
    if pretrained is not True or not require:
        return
    if arch is not None and arch not in WEIGHTS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(WEIGHTS)}")
    archs = [arch] if arch is not None else list(WEIGHTS)
    missing = [a for a in archs if not cached_weights(a).is_file()]
    if not missing:
        return
    problem = download_problem(weights_url(missing[0]), timeout)
    if problem is None:
        return
    which = "the file" if arch is not None else "the file of this chapter's encoder, one of"
    files = ", ".join(weights_url(a) for a in missing)
    example = WEIGHTS[missing[0]][1]
    raise ValueError(
        f"pretrained=True: the ImageNet weights are not in torch's cache "
        f"({cached_weights(missing[0]).parent}) and cannot be downloaded ({problem}); this "
        "run does not train a pretrained network from scratch. Download "
        f"{which} {files} on a machine with internet access, then pass "
        f"pretrained=<path to the file> (papermill: -p pretrained /path/to/{example}) or copy "
        "it into that cache folder; or pass pretrained=False to train from scratch (not the "
        "paper's setting)."
    )
