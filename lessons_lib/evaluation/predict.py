"""Predict lesion masks for a folder of images with a chapter run's network(s), as the chapter did.

A chapter records how it predicts in its run folder, as ``predictor.json`` (JSON, versioned by
:data:`PREDICTOR_SCHEMA`): :func:`predictor_spec` reads it off the Learner(s) the chapter
evaluated with, :func:`write_predictor` writes it. :func:`predict_folder` (the command
``python -m lessons_lib predict --run RUN --images DIR --out DIR [--zip FILE]``) then predicts
every image of a folder and writes one ``<stem>_segmentation.png`` per image: 8-bit greyscale,
0 (skin) and 255 (lesion), at the image's size, the format of the ISIC challenges' task 1 (a zip
of ``ISIC_<id>_segmentation.png`` files, packed by :func:`write_zip`).

Each image takes the chapter's own path, so a predicted mask equals the chapter's evaluation
output (:func:`lessons_lib.evaluation.evaluate` with ``save_dir``):

1. **prepare** (:func:`prepared_image`): decoded (JPEG draft mode), its shorter side resized to
   the prepare size with Lanczos, and stored as the prepared cache stores it (a quality-95
   JPEG), as :mod:`lessons_lib.data.prepare` does;
2. **network input**: fastai's ``Resize`` (squish) to the input size, ``ToTensor``,
   ``IntToFloatTensor``, then the inference transforms of the chapter's validation batches by
   name (:data:`INFERENCE_TRANSFORMS`), in fastai's order; training-only augmentation is left out;
3. **probability**: each network's output through its loss's declared activation
   (:func:`lessons_lib.losses.base.activate`, :func:`~lessons_lib.losses.base.foreground`); an
   ensemble's probabilities are averaged (:func:`~lessons_lib.evaluation.ensemble.average_probs`);
4. **mask**: resized to the original size and post-processed there, or post-processed at the
   input size and then resized (:func:`mask_at_original`, ``postprocess_at``).

Equal, not merely close, when predicting on the device and with the batch size the chapter
evaluated with. Two things can move a probability by about 1e-7 (and so, rarely, a pixel lying
on the threshold): other batch sizes (the convolution kernels round differently) and a GPU,
where fastai's evaluation runs in mixed precision and :func:`predict_folder` in float32.
Augmentation warps run at validation as identity warps (fastai's ``AffineCoordTfm``); predict
leaves them out, which changes nothing measurable.

Nothing in a run folder is unpickled: weights are read with ``torch.load(weights_only=True)``,
and the spec names only registry models (:func:`lessons_lib.models.build_model`), transforms of
:data:`INFERENCE_TRANSFORMS` and post-processing of
:data:`~lessons_lib.evaluation.postprocess.POSTPROCESS`. Models are rebuilt with
``pretrained=False`` (the run's weights replace any initial weights, so nothing is downloaded).

EXIF: images are read on their stored pixel grid. The ISIC masks are drawn on it (their images
carry no reliable EXIF tags, the challenge pages say), and evaluation reads images this way
whenever the mask matches the stored grid (:func:`lessons_lib.data.io.read_pair`).
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
from fastai.vision.augment import AffineCoordTfm, Resize, ResizeMethod
from fastai.vision.core import PILImage, TensorImage
from fasttransform import Pipeline
from PIL import Image
from torch import Tensor, nn

from lessons_lib.atomic import jsonable, write_json, write_with
from lessons_lib.data.io import open_image
from lessons_lib.data.layouts import list_images
from lessons_lib.data.prepare import JPEG_QUALITY, PreparedData, resize_image, working_size
from lessons_lib.errors import DataError
from lessons_lib.evaluation.ensemble import average_probs
from lessons_lib.evaluation.evaluate import POSTPROCESS_AT, RESIZE_MODES, mask_at_original
from lessons_lib.evaluation.postprocess import POSTPROCESS
from lessons_lib.losses.base import ACTIVATIONS, activate, foreground
from lessons_lib.transforms import CDNNChannels, PerImageStandardize

__all__ = [
    "INFERENCE_TRANSFORMS",
    "InferenceTransform",
    "PREDICTOR_FILE",
    "PREDICTOR_SCHEMA",
    "PREPARE_JPEG_QUALITY",
    "check_spec",
    "load_models",
    "load_weights",
    "mask_at_original",
    "mask_name",
    "predict_folder",
    "predict_images",
    "predict_probs",
    "predictor_spec",
    "prepared_image",
    "read_predictor",
    "spec_to_original",
    "write_predictor",
    "write_zip",
]

PREDICTOR_FILE = "predictor.json"
"""The predictor spec's file name in a run folder."""

PREDICTOR_SCHEMA = 1
"""Version of the ``predictor.json`` schema; raise it whenever a field changes meaning."""

PREPARE_JPEG_QUALITY = JPEG_QUALITY
"""The JPEG quality of :func:`lessons_lib.data.prepare.prepare`'s cached images (the networks
were trained and evaluated on these)."""

_RERUN = "rerun the chapter (papermill) into this folder: it writes predictor.json"


# ----------------------------------------------------------------------------- registries
class InferenceTransform(NamedTuple):
    """A batch transform that runs at inference: how it is recorded and rebuilt.

    Attributes:
        cls: Its class (a transform of the chapter's validation batches is matched by it).
        record: ``transform -> kwargs`` (JSON-able) that :attr:`build` turns back into it.
        build: ``kwargs -> transform``.
    """

    cls: type
    record: Callable[[Any], dict[str, Any]]
    build: Callable[..., Any]


def _record_normalize(tfm: Normalize) -> dict[str, Any]:
    if tfm.mean is None or tfm.std is None:
        raise ValueError("Normalize has no statistics yet (set up on no data)")
    if tuple(tfm.axes) != (0, 2, 3):
        raise ValueError(f"Normalize over axes {tuple(tfm.axes)} (only per channel is recorded)")
    mean = torch.as_tensor(tfm.mean).flatten().tolist()
    std = torch.as_tensor(tfm.std).flatten().tolist()
    return {"mean": mean, "std": std}


def _build_normalize(mean: Sequence[float], std: Sequence[float]) -> Normalize:
    if len(mean) != len(std) or not mean:
        raise ValueError(f"Normalize needs one mean and one std per channel, got {mean}, {std}")
    return Normalize.from_stats(list(mean), list(std), cuda=False)


INFERENCE_TRANSFORMS: dict[str, InferenceTransform] = {
    "Normalize": InferenceTransform(Normalize, _record_normalize, _build_normalize),
    "PerImageStandardize": InferenceTransform(
        PerImageStandardize, lambda t: {}, PerImageStandardize
    ),
    "CDNNChannels": InferenceTransform(
        CDNNChannels, lambda t: {"channels": t.channels}, CDNNChannels
    ),
}
"""The batch transforms that run on validation batches, by name. A chapter whose validation
batches hold another transform cannot record its predictor: add the transform here."""


# ----------------------------------------------------------------------------- recording
def _plain_json(value: Any, what: str) -> Any:
    """``value`` as JSON stores it, or a ``ValueError`` naming ``what``."""
    try:
        return jsonable(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not JSON ({value!r}): predict cannot rebuild it") from None


def _postprocess_spec(postprocess: Callable | str | None) -> dict[str, Any] | None:
    """``{"name", "kwargs"}`` of a post-processing function, a ``functools.partial`` of one
    (keyword arguments only), or a name in
    :data:`~lessons_lib.evaluation.postprocess.POSTPROCESS`."""
    if postprocess is None:
        return None
    func, kwargs = postprocess, {}
    if isinstance(postprocess, functools.partial):
        if postprocess.args:
            raise ValueError("post-processing: give its arguments by keyword (partial(f, t=...))")
        func, kwargs = postprocess.func, dict(postprocess.keywords)
    name = func if isinstance(func, str) else getattr(func, "__name__", repr(func))
    if name not in POSTPROCESS or not (func is POSTPROCESS[name] or isinstance(func, str)):
        raise ValueError(
            f"post-processing {name!r} is not recordable; valid: {', '.join(POSTPROCESS)} "
            "(a function of lessons_lib.evaluation.postprocess, or a functools.partial of one)"
        )
    spec = {"name": name, "kwargs": _plain_json(kwargs, f"post-processing {name}'s arguments")}
    _check_call(POSTPROCESS[name], spec["kwargs"], f"post-processing {name}")
    return spec


def _check_call(func: Callable, kwargs: Mapping[str, Any], what: str) -> None:
    """Check that ``func(probabilities, **kwargs)`` binds."""
    try:
        inspect.signature(func).bind(None, **kwargs)
    except TypeError as err:
        raise ValueError(f"{what}: {err}") from None


def _input_pipeline(learn) -> tuple[list[int], list[dict[str, Any]]]:
    """``([height, width], transforms)`` of a Learner's validation batches."""
    valid = learn.dls.valid
    size = None
    for tfm in valid.after_item.fs:
        if isinstance(tfm, Resize):
            if tfm.method != ResizeMethod.Squish:
                raise ValueError(f"only Resize(method='squish') is recorded, got {tfm.method!r}")
            size = [int(tfm.size[1]), int(tfm.size[0])]  # fastai keeps (width, height)
        elif type(tfm).__name__ not in ("ToTensor", "AddMaskCodes"):
            raise ValueError(f"item transform {type(tfm).__name__} is not recordable")
    if size is None:
        raise ValueError("the Learner's validation items are not resized (no fastai Resize)")
    recorded = []
    for tfm in valid.after_batch.fs:
        if isinstance(tfm, IntToFloatTensor):
            if float(tfm.div) != 255.0:
                raise ValueError(f"IntToFloatTensor(div={tfm.div}) is not recordable (only 255)")
            continue
        if tfm.split_idx == 0:  # training-only augmentation
            continue
        if isinstance(tfm, AffineCoordTfm) and tfm.size is None:  # identity warp at validation
            continue
        known = [n for n, t in INFERENCE_TRANSFORMS.items() if type(tfm) is t.cls]
        if not known:
            raise ValueError(
                f"batch transform {type(tfm).__name__} runs on validation batches but predict "
                f"cannot rebuild it; known: {', '.join(INFERENCE_TRANSFORMS)} "
                "(add it to lessons_lib.evaluation.predict.INFERENCE_TRANSFORMS)"
            )
        name = known[0]
        kwargs = _plain_json(INFERENCE_TRANSFORMS[name].record(tfm), f"{name}'s arguments")
        recorded.append({"name": name, "kwargs": kwargs})
    return size, recorded


def predictor_spec(
    learn,
    data: PreparedData,
    weights: Path | str | Sequence[Path | str],
    *,
    resize: str = "nearest",
    postprocess: Callable | str | None = None,
    postprocess_at: str = "original",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """How a chapter predicts, read off the Learner(s) it evaluated with.

    Pass what the chapter passed to :func:`~lessons_lib.evaluation.evaluate`.

    Args:
        learn: The Learner, or a sequence of Learners (an ensemble, averaged). Each model must
            come from :func:`lessons_lib.models.build_model` (its ``build_spec``), each loss
            declare its output activation; the ensemble's validation transforms must agree.
        data: The prepared dataset the chapter evaluated on (its prepare size).
        weights: The weights file of each Learner's model, in the same order
            (``run.save_weights(...)``'s path, or a checkpoint of ``fit_stage``).
        resize: Interpolation back to the original size (``RESIZE_MODES``).
        postprocess: ``None`` (``prob > threshold``), a function of
            :data:`~lessons_lib.evaluation.postprocess.POSTPROCESS`, a ``functools.partial`` of
            one with keyword arguments, or its name.
        postprocess_at: ``"original"`` or ``"model"`` (``POSTPROCESS_AT``).
        threshold: Used when ``postprocess`` is ``None``.

    Returns:
        The spec (a JSON-able dict) for :func:`write_predictor`; weights paths as given.

    Raises:
        ValueError: something the spec cannot record (named).
    """
    learners = [learn] if hasattr(learn, "dls") else list(learn)
    files = [weights] if isinstance(weights, (str, Path)) else list(weights)
    if not learners or len(files) != len(learners):
        raise ValueError(f"need one weights file per Learner: {len(learners)} Learner(s), {files}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; valid: {', '.join(RESIZE_MODES)}")
    if postprocess_at not in POSTPROCESS_AT:
        raise ValueError(f"unknown postprocess_at {postprocess_at!r}; valid: {POSTPROCESS_AT}")
    models, pipelines = [], []
    for i, (one, path) in enumerate(zip(learners, files, strict=True)):
        build = getattr(one.model, "build_spec", None)
        if build is None:
            raise ValueError(f"Learner {i}'s model was not built by lessons_lib.models.build_model")
        activation = getattr(one.loss_func, "output_activation", None)
        if activation not in ACTIVATIONS:
            raise ValueError(f"Learner {i}'s loss declares no output activation ({activation!r})")
        kwargs = _plain_json(build["kwargs"], f"{build['name']}'s arguments")
        models.append(
            {
                "name": build["name"],
                "kwargs": kwargs,
                "weights": str(path),
                "activation": activation,
            }
        )
        pipelines.append(_input_pipeline(one))
    if any(p != pipelines[0] for p in pipelines):
        raise ValueError(f"the Learners' validation inputs differ: {pipelines}")
    size, transforms = pipelines[0]
    return {
        "schema_version": PREDICTOR_SCHEMA,
        "models": models,
        "prepare_size": int(data.manifest["size"]),
        "input_size": size,
        "transforms": transforms,
        "resize": resize,
        "postprocess": _postprocess_spec(postprocess),
        "postprocess_at": postprocess_at,
        "threshold": float(threshold),
    }


def write_predictor(run_dir: Path | str, spec: Mapping[str, Any]) -> Path:
    """Check ``spec`` and write it atomically as ``<run_dir>/predictor.json``.

    Weights paths become relative to ``run_dir`` (they must lie inside it and exist), so the run
    folder can be moved or shared whole.

    Returns:
        The file written.

    Raises:
        DataError: a weights file outside ``run_dir`` or missing, or an invalid spec.
    """
    run_dir = Path(run_dir)
    spec = dict(spec)
    models = []
    for model in spec.get("models", []):
        path = Path(model["weights"])
        full = path if path.is_absolute() else run_dir / path
        try:
            relative = full.resolve().relative_to(run_dir.resolve())
        except ValueError:
            raise DataError(
                "weights file is outside the run folder", full, f"save it under {run_dir}"
            ) from None
        if not full.is_file():
            raise DataError("weights file not found", full, "save the weights before the spec")
        models.append({**model, "weights": relative.as_posix()})
    spec["models"] = models
    dest = run_dir / PREDICTOR_FILE
    check_spec(jsonable(spec), dest)
    return write_json(dest, spec)


# ----------------------------------------------------------------------------- reading
def _fail(path: Path, message: str) -> DataError:
    return DataError(
        f"invalid predictor spec: {message}", path, f"{_RERUN}, or restore the file as written"
    )


def _inside(weights: Any) -> bool:
    """Whether ``weights`` is a relative path that stays inside the run folder."""
    if not isinstance(weights, str) or not weights:
        return False
    path = Path(weights)
    return not path.is_absolute() and ".." not in path.parts


def check_spec(spec: Any, path: Path) -> dict[str, Any]:
    """Check a predictor spec read from ``path`` field by field.

    Returns:
        ``spec``.

    Raises:
        DataError: another schema version (found and expected named) or a bad field (named).
    """
    if not isinstance(spec, dict):
        raise _fail(path, "not a JSON object")
    version = spec.get("schema_version")
    if version != PREDICTOR_SCHEMA:
        newer = isinstance(version, int) and version > PREDICTOR_SCHEMA
        raise DataError(
            f"predictor spec of schema version {version!r}; this lessons_lib reads version "
            f"{PREDICTOR_SCHEMA}",
            path,
            "update lessons_lib (a newer version wrote this run)" if newer else _RERUN,
        )

    def need(key: str, ok: Callable[[Any], bool], what: str, within: dict = spec) -> Any:
        if key not in within:
            raise _fail(path, f"missing field {key!r}")
        if not ok(within[key]):
            raise _fail(path, f"field {key!r} must be {what}, got {within[key]!r}")
        return within[key]

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    def named(entry: Any, table: Mapping[str, Any], what: str) -> None:
        if not isinstance(entry, dict):
            raise _fail(path, f"each {what} must be an object, got {entry!r}")
        need("name", lambda v: v in table, f"one of {', '.join(table)}", entry)
        need("kwargs", lambda v: isinstance(v, dict), "an object", entry)

    models = need("models", lambda v: isinstance(v, list) and v, "a non-empty list")
    for model in models:
        if not isinstance(model, dict):
            raise _fail(path, f"each model must be an object, got {model!r}")
        need("name", lambda v: isinstance(v, str), "a registry name", model)
        need("kwargs", lambda v: isinstance(v, dict), "an object", model)
        need("weights", _inside, "a relative path inside the run folder", model)
        need("activation", lambda v: v in ACTIVATIONS, f"one of {ACTIVATIONS}", model)
    need("prepare_size", whole, "a whole number >= 1")
    need(
        "input_size",
        lambda v: isinstance(v, list) and len(v) == 2 and all(map(whole, v)),
        "[height, width]",
    )
    for tfm in need("transforms", lambda v: isinstance(v, list), "a list"):
        named(tfm, INFERENCE_TRANSFORMS, "transform")
    need("resize", lambda v: v in RESIZE_MODES, f"one of {RESIZE_MODES}")
    post = need("postprocess", lambda v: v is None or isinstance(v, dict), "null or an object")
    if post is not None:
        named(post, POSTPROCESS, "postprocess")
        try:
            _check_call(POSTPROCESS[post["name"]], post["kwargs"], post["name"])
        except ValueError as err:
            raise _fail(path, str(err)) from None
    need("postprocess_at", lambda v: v in POSTPROCESS_AT, f"one of {POSTPROCESS_AT}")
    need(
        "threshold",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
        "a probability between 0 and 1",
    )
    return spec


def read_predictor(run_dir: Path | str) -> dict[str, Any]:
    """Read and check ``<run_dir>/predictor.json``.

    Raises:
        DataError: ``run_dir`` is not a run folder, a run made before predict existed, or its
            spec is unreadable, of another schema version or invalid.
    """
    run_dir = Path(run_dir)
    path = run_dir / PREDICTOR_FILE
    if not run_dir.is_dir():
        raise DataError("run folder not found", run_dir, "pass a chapter's run folder as --run")
    if not path.is_file():
        if (run_dir / "metrics.json").is_file() or (run_dir / "params.json").is_file():
            raise DataError(
                f"this run has no {PREDICTOR_FILE}: it was made before predict existed",
                run_dir,
                _RERUN,
            )
        raise DataError(
            f"not a run folder (no {PREDICTOR_FILE} or metrics.json)",
            run_dir,
            "pass a chapter's run folder, runs/<chapter>/<profile>-<dataset>",
        )
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"unreadable JSON ({err})") from None
    return check_spec(spec, path)


def load_weights(path: Path | str) -> dict[str, Tensor]:
    """A model's ``state_dict`` from a weights file, read with ``torch.load(weights_only=True)``.

    Accepts a plain ``state_dict`` (``run.save_weights``, fastai's ``save_model`` without the
    optimiser) and fastai's ``{"model": ..., "opt": ...}`` (whose optimiser state holds
    ``fastcore``'s list type ``L``: the one class allowed besides what ``weights_only`` allows).

    Raises:
        DataError: the file is missing or empty, is not a PyTorch file (a text or system
            file), is not a weights file (e.g. it holds other pickled objects: they are
            refused, never unpickled), or holds no tensors.
    """
    from fastcore.foundation import L

    path = Path(path)
    if not path.is_file():
        raise DataError("weights file not found", path, _RERUN)
    if path.stat().st_size == 0:
        raise DataError("the weights file is empty", path, _RERUN)
    try:
        with torch.serialization.safe_globals([L]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if "Unsupported" in line]
        why = lines[0].split(" was not", 1)[0] if lines else str(err).strip()[:200]
        raise DataError(
            "refused: not a plain weights file (torch.load(weights_only=True) does not unpickle "
            f"arbitrary objects: {why.removeprefix('WeightsUnpickler error: ')})",
            path,
            "save the weights alone: torch.save(model.state_dict(), ...) (run.save_weights does)",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"unreadable weights file ({err})", path, _RERUN) from None
    except Exception as err:  # noqa: BLE001 - a text or system file: the unpickler's own errors
        raise DataError(
            f"not a PyTorch weights file (torch.load could not read it: {type(err).__name__} "
            f"{err})",
            path,
            _RERUN,
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "opt" in state:
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError("not a state_dict (a mapping of names to tensors)", path, _RERUN)
    return state


def load_models(
    run_dir: Path | str, spec: Mapping[str, Any], device: torch.device | str = "cpu"
) -> list[tuple[nn.Module, str]]:
    """Rebuild each model of ``spec`` from the registry and load its weights.

    Returns:
        ``[(model in eval mode on device, activation), ...]``.

    Raises:
        DataError: a missing or refused weights file, weights that do not fit the model, or a
            model the registry cannot build (each names the file).
    """
    from lessons_lib.models import build_model

    run_dir = Path(run_dir)
    out = []
    for entry in spec["models"]:
        kwargs = dict(entry["kwargs"])
        if "pretrained" in kwargs:  # the run's weights replace the initial ones: no download
            kwargs["pretrained"] = False
        try:
            model = build_model(entry["name"], **kwargs)
        except (KeyError, TypeError, ValueError) as err:
            raise _fail(
                run_dir / PREDICTOR_FILE, f"cannot build model {entry['name']}: {err}"
            ) from None
        weights = run_dir / entry["weights"]
        state = load_weights(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            detail = str(err).strip().splitlines()
            raise DataError(
                f"weights do not fit model {entry['name']} {entry['kwargs']}: "
                + " ".join(line.strip() for line in detail[:3]),
                weights,
                _RERUN,
            ) from None
        out.append((model.to(device).eval(), entry["activation"]))
    return out


# ----------------------------------------------------------------------------- predicting
def prepared_image(path: Path | str, prepare_size: int) -> tuple[Image.Image, tuple[int, int]]:
    """An image as the prepared cache holds it, and its original size.

    The image half of :func:`lessons_lib.data.prepare.load_resized` (stored pixel grid): JPEG
    draft decoding, shorter side to ``prepare_size`` (never upscaled) with Lanczos, RGB; then
    encoded and decoded as a quality-95 JPEG, as the cache stores it.

    Returns:
        ``(RGB image at working size, (width, height) of the original)``.

    Raises:
        DataError: the file cannot be read as an RGB image (named).
    """
    path = Path(path)
    im = open_image(path)
    size = im.size
    image = resize_image(im, path, working_size(*size, prepare_size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=PREPARE_JPEG_QUALITY)
    return Image.open(io.BytesIO(buffer.getvalue())), size


def _pipelines(spec: Mapping[str, Any], device: torch.device) -> tuple[Pipeline, Pipeline]:
    """The item (resize, to tensor) and batch (to float, transforms) pipelines of ``spec``."""
    height, width = spec["input_size"]
    items = Pipeline([Resize((height, width), method=ResizeMethod.Squish), ToTensor()], split_idx=1)
    tfms = [IntToFloatTensor()]
    for entry in spec["transforms"]:
        tfm = INFERENCE_TRANSFORMS[entry["name"]].build(**entry["kwargs"])
        if isinstance(tfm, Normalize):
            tfm.mean, tfm.std = tfm.mean.to(device), tfm.std.to(device)
        tfms.append(tfm)
    return items, Pipeline(tfms, split_idx=1)


def _device(device: torch.device | str | None) -> torch.device:
    """``device``, default ``cuda`` when available, else ``cpu``; one that is unusable here is a
    :class:`DataError`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise DataError(f"unknown device {device!r}", fix="pass cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError("no CUDA GPU is available here", fix="leave out the device, or pass cpu")
    return device


def predict_probs(
    run_dir: Path | str,
    images: Sequence[Path],
    spec: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    models: list[tuple[nn.Module, str]] | None = None,
) -> Iterator[tuple[Path, np.ndarray, tuple[int, int]]]:
    """Yield each image's lesion probability at the network's input size, as the run's chapter
    predicts it (steps 1-3 of the module's list; an ensemble's average).

    Args:
        run_dir: The run folder (its ``predictor.json`` and weights).
        images: Image files.
        spec: The run's spec (default: read from ``run_dir``).
        batch_size: Images per forward pass.
        device: Default ``cuda`` if available, else ``cpu``.
        models: The run's networks, already loaded on ``device`` (:func:`load_models`);
            default: loaded here.

    Yields:
        ``(image path, float32 (h, w) probability, (width, height) of the original)``.
    """
    spec = read_predictor(run_dir) if spec is None else spec
    device = _device(device)
    models = load_models(run_dir, spec, device) if models is None else models
    items, batch_tfms = _pipelines(spec, device)
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        tensors, sizes = [], []
        for path in chunk:
            image, size = prepared_image(path, spec["prepare_size"])
            tensors.append(items(PILImage.create(image.convert("RGB"))))
            sizes.append(size)
        xb = batch_tfms(TensorImage(torch.stack(tensors)).to(device))
        xb = xb.as_subclass(Tensor)
        with torch.no_grad():
            probs = [
                foreground(activate(model(xb), activation).float()).cpu().numpy()
                for model, activation in models
            ]
        for i, (path, size) in enumerate(zip(chunk, sizes, strict=True)):
            prob = probs[0][i] if len(probs) == 1 else average_probs([p[i] for p in probs])
            yield path, prob, size


def spec_to_original(
    spec: Mapping[str, Any],
) -> Callable[[np.ndarray, tuple[int, int]], np.ndarray]:
    """The spec's rule from a probability at input size to a mask at the original size:
    ``(prob, (width, height)) -> bool mask`` (:func:`mask_at_original` with its resize,
    post-processing and threshold)."""
    post = spec["postprocess"]
    postprocess = (
        None if post is None else functools.partial(POSTPROCESS[post["name"]], **post["kwargs"])
    )
    return functools.partial(
        mask_at_original,
        resize=spec["resize"],
        postprocess=postprocess,
        postprocess_at=spec["postprocess_at"],
        threshold=spec["threshold"],
    )


def predict_images(
    run_dir: Path | str,
    images: Sequence[Path],
    spec: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    models: list[tuple[nn.Module, str]] | None = None,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield each image's mask at its original size, predicted as the run's chapter predicts:
    :func:`predict_probs` (same arguments), then :func:`spec_to_original`.

    Yields:
        ``(image path, bool (height, width) mask)``.
    """
    spec = read_predictor(run_dir) if spec is None else spec
    to_original = spec_to_original(spec)
    for path, prob, size in predict_probs(run_dir, images, spec, batch_size, device, models):
        yield path, to_original(prob, size)


def mask_name(image: Path | str) -> str:
    """The challenge's name of an image's mask: ``<stem>_segmentation.png``."""
    return f"{Path(image).stem}_segmentation.png"


def write_zip(zip_path: Path | str, files: Sequence[Path]) -> Path:
    """Pack ``files`` flat at the archive's root, atomically (the challenges' submission zip)."""

    def save(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=Path(path).name)

    return write_with(zip_path, save)


PREDICT_STATE = ".predict.json"
"""What :func:`predict_folder` records in ``--out``: the run and predictor its masks come from, so
that a rerun into the same folder continues (and one with another run is refused)."""


def check_images(images: Sequence[Path], prepare_size: int) -> list[DataError]:
    """Every problem of ``images`` in one pass, as ``data check`` lists a dataset's: each image
    is opened and decoded as prediction will (:func:`prepared_image`'s decoding and RGB rules).

    Returns:
        One :class:`DataError` per unreadable image (each names its file and the fix), in
        image order; empty when every image can be predicted.
    """
    problems = []
    for path in images:
        try:
            im = open_image(path)
            resize_image(im, path, working_size(*im.size, prepare_size))
        except DataError as err:
            problems.append(err)
    return problems


def _state(run_dir: Path) -> dict[str, Any]:
    """The identity of a run's predictions: its folder, its predictor and its weights' files."""
    spec = read_predictor(run_dir)
    weights = {}
    for entry in spec["models"]:
        stat = (run_dir / entry["weights"]).stat()
        weights[entry["weights"]] = [stat.st_size, stat.st_mtime_ns]
    return {"run": str(run_dir.resolve()), "predictor": spec, "weights": weights}


def predict_folder(
    run_dir: Path | str,
    images_dir: Path | str,
    out_dir: Path | str,
    zip_path: Path | str | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    skip_bad: bool = False,
) -> PredictResult:
    """Predict every image of a folder; write ``<stem>_segmentation.png`` masks (and a zip).

    Masks are 8-bit greyscale PNGs, 0 and 255, at each image's size. Images are the folder's
    image files (:func:`lessons_lib.data.layouts.list_images`: superpixel maps, masks and hidden
    files are skipped). Every file is written atomically.

    Before any prediction every image is checked (:func:`check_images`): all problems are
    listed in one error, or, with ``skip_bad``, the bad images are left out and named in the
    result. A rerun into the same ``out_dir`` continues: masks a previous run of the same run
    folder and weights wrote (``out_dir/.predict.json`` records which) are kept, not predicted
    again; masks of another run there are refused.

    Args:
        run_dir: A chapter's run folder holding ``predictor.json``.
        images_dir: Folder of images (e.g. ``ISIC2018_Task1-2_Test_Input``).
        out_dir: Where the masks go (made if needed).
        zip_path: If given, the masks are also packed into this zip, flat.
        batch_size: Images per forward pass.
        device: Default ``cuda`` if available, else ``cpu``.
        skip_bad: Predict the images that can be read and name the others, instead of
            stopping before any prediction.

    Returns:
        A :class:`PredictResult`: the mask files (in image order; those kept from a previous
        run included), how many were kept, and the skipped images with their problems.

    Raises:
        DataError: a bad run folder or spec, a missing or refused weights file, an images
            folder without images, two images with one stem, unreadable images (all named,
            unless ``skip_bad``), or an ``out_dir`` holding another run's masks.
    """
    run_dir, images_dir, out_dir = Path(run_dir), Path(images_dir), Path(out_dir)
    spec = read_predictor(run_dir)  # first: a bad run folder is the likelier mistake
    device = _device(device)
    models = load_models(run_dir, spec, device)  # a bad weights file, before any image
    if not images_dir.is_dir():
        raise DataError("images folder not found", images_dir, "pass a folder of images")
    images = list_images(images_dir)
    if not images:
        raise DataError(
            "no images in this folder (.jpg, .jpeg, .png, .bmp, .tif, .tiff)",
            images_dir,
            "pass the folder that holds the images themselves",
        )
    seen: dict[str, Path] = {}
    for image in images:
        other = seen.setdefault(mask_name(image), image)
        if other != image:
            raise DataError(
                f"{other.name} and {image.name} would both be {mask_name(image)}",
                images_dir,
                "keep one image per name stem",
            )
    problems = check_images(images, spec["prepare_size"])
    all_bad = len(problems) == len(images)
    if problems and (not skip_bad or all_bad):
        listed = "\n".join(f"  {err}".replace("\n", "\n  ") for err in problems)
        raise DataError(
            f"{len(problems)} of {len(images)} images cannot be read; nothing was predicted:\n"
            f"{listed}",
            images_dir,
            "fix or remove them (each has its fix above)"
            + ("" if all_bad else ", or pass --skip-bad to predict the others"),
        )
    bad = {err.path for err in problems}
    images = [image for image in images if image not in bad]
    state = json.loads(json.dumps(jsonable(_state(run_dir))))  # as the file will read back
    state_file = out_dir / PREDICT_STATE
    done: set[Path] = set()
    if state_file.is_file():
        try:
            before = json.loads(state_file.read_text())
        except (OSError, ValueError):
            before = None
        if before != state:
            raise DataError(
                "this folder holds masks predicted with another run folder or other weights",
                out_dir,
                "pass another --out, or delete this folder to predict again",
            )
        done = {out_dir / mask_name(image) for image in images}
        done = {path for path in done if path.is_file()}
    elif out_dir.is_dir() and any(out_dir.glob("*_segmentation.png")):
        raise DataError(
            "this folder already holds masks that predict did not record",
            out_dir,
            "pass an empty or new --out folder",
        )
    write_json(state_file, state)
    todo = [image for image in images if out_dir / mask_name(image) not in done]
    for path, mask in predict_images(run_dir, todo, spec, batch_size, device, models):
        png = Image.fromarray(mask.astype(np.uint8) * 255)
        write_with(out_dir / mask_name(path), lambda p, png=png: png.save(p, format="PNG"))
    written = [out_dir / mask_name(image) for image in images]
    if zip_path is not None:
        write_zip(zip_path, written)
    return PredictResult(written, len(images) - len(todo), problems)


class PredictResult(NamedTuple):
    """What :func:`predict_folder` did.

    Args:
        masks: Every mask file of the predicted images, in image order.
        kept: How many of them a previous run into the same folder had written.
        skipped: The images left out (``skip_bad``), one :class:`DataError` each, naming the
            file and its fix.
    """

    masks: list[Path]
    kept: int
    skipped: list[DataError]
