"""A chapter's parameters: its ``PROFILES`` merged with what the user passed, checked and
converted by the profiles' types and ranges before anything is written or prepared.

:func:`resolve_params` is the first call of every chapter; :class:`ParameterError` lists every
wrong parameter at once, each with the type and range it expects and the value given.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lessons_lib.atomic import jsonable
from lessons_lib.data.layouts import DATASETS
from lessons_lib.errors import DataError

PROFILES = ("smoke", "full")
COMMON = ("data_dir", "seed", "out_dir")  # parameters every chapter has, the same in any profile
OPTIONAL = ("overwrite", "dry_run")  # taken from the given values when a chapter defines them

DRY_RUN_ITERATIONS = 2
"""Training iterations per epoch in a dry run: a dry run uses ``DRY_RUN_ITERATIONS`` times the
largest batch size as its number of images per split (see :func:`dry_run_params`)."""

RANGES: dict[str, tuple[float, bool, float | None, bool]] = {
    "seed": (0, True, 2**32 - 1, True),
    "n_folds": (2, True, None, False),
    "workers": (0, True, None, False),
    "speed_warmup": (0, True, None, False),
    "lr_find_iters": (0, True, None, False),
    "momentum": (0, True, 1, False),
    "hold_out": (0, False, 1, False),
    "threshold": (0, False, 1, False),
    "weight_decay": (0, True, None, False),
    "epe_weight": (0, True, None, False),
    "poly_power": (0, True, None, False),
    "max_rotate": (0, True, None, False),
}
"""Ranges of the parameters that are not simply positive: ``name -> (low, low included, high,
high included)`` (``high`` ``None``: no upper bound). See :func:`resolve_params`."""


class ParameterError(ValueError):
    """Chapter parameters of the wrong type, out of range, or naming what does not exist.

    Each line of the message names one parameter, what it expects (type and range) and the
    value given.

    Args:
        problems: ``{parameter: message}``, one entry per wrong parameter.
    """

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        self.name = next(iter(self.problems))
        lines = list(self.problems.values())
        text = (
            lines[0]
            if len(lines) == 1
            else f"{len(lines)} wrong parameters:\n" + "\n".join(f"  {line}" for line in lines)
        )
        super().__init__(text)


@dataclass(frozen=True)
class _Spec:
    """What a parameter accepts, inferred from the profiles' values."""

    kinds: frozenset[str]  # bool, int, float, str, path, pretrained, seq, dict, any
    none_ok: bool = False
    elem: _Spec | None = None  # a sequence's elements
    length: int | None = None  # a sequence's exact length (None: one or more)
    container: type = tuple
    example: Any = None  # a profile's value, shown in messages


class _Mismatch(Exception):
    """A value that does not fit a :class:`_Spec` (the reason, in words)."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Path):
        return "path"
    if isinstance(value, (list, tuple)):
        return "seq"
    if isinstance(value, Mapping):
        return "dict"
    return "any"


def _infer(values: Sequence[Any]) -> _Spec:
    """The spec of a parameter (or of a sequence's elements) from the values the profiles hold."""
    present = [v for v in values if v is not None]
    if not present:
        return _Spec(frozenset({"any"}), none_ok=True)
    kinds = {_kind(v) for v in present}
    if {"int", "float"} <= kinds:
        kinds.discard("int")  # an int is fine where a float is expected
    seqs = [v for v in present if isinstance(v, (list, tuple))]
    elem, length, container = None, None, tuple
    if seqs:
        items = [x for s in seqs for x in s]
        elem = _infer(items) if items else _Spec(frozenset({"any"}), none_ok=True)
        lengths = {len(s) for s in seqs}
        length = lengths.pop() if len(lengths) == 1 else None
        container = type(seqs[0])
    return _Spec(frozenset(kinds), len(present) < len(values), elem, length, container, present[0])


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _leaves(v)]
    return [value]


def _bounds(name: str, profile_values: Sequence[Any]) -> tuple[float, bool, float | None, bool]:
    if name in RANGES:
        return RANGES[name]
    zero = any(
        isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0
        for x in _leaves(list(profile_values))
    )
    return (0, zero, None, False)  # positive; non-negative where a profile has 0


def _range_text(bounds: tuple[float, bool, float | None, bool], integer: bool) -> str:
    low, low_in, high, high_in = bounds
    if high is None:
        if integer:  # integers: ">= 1" reads better than "> 0"
            return f">= {low if low_in else math.floor(low) + 1}"
        return f">= {low}" if low_in else f"> {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _describe(spec: _Spec, bounds: tuple, plural: bool = False, stages: bool = False) -> str:
    words = []
    for kind in sorted(spec.kinds):
        if kind == "bool":
            words.append("True or False")
        elif kind == "int":
            words.append(f"{'ints' if plural else 'an int'} {_range_text(bounds, True)}")
        elif kind == "float":
            words.append(f"{'numbers' if plural else 'a number'} {_range_text(bounds, False)}")
        elif kind == "str":
            words.append("strings" if plural else "a string")
        elif kind in ("path", "pretrained"):
            words.append("paths" if plural else "a path")
        elif kind == "dict":
            words.append("dicts" if plural else "a dict")
        elif kind == "seq" and spec.elem is not None:
            count = f"{spec.length} " if spec.length is not None and not stages else ""
            inner = _describe(spec.elem, bounds, plural=True)
            words.append(f"{'lists' if plural else 'a list'} of {count}{inner}")
            if stages:
                words[-1] += ", one per stage"
        else:
            words.append(f"a value (if a number, {_range_text(bounds, True)})")
    text = " or ".join(words)
    return f"{text} or None" if spec.none_ok and not plural else text


def _in_range(value: float, bounds: tuple, where: str) -> None:
    low, low_in, high, high_in = bounds
    below = value < low or (value == low and not low_in)
    above = high is not None and (value > high or (value == high and not high_in))
    if below or above:
        raise _Mismatch(f"{where} is out of range")


def _check(value: Any, spec: _Spec, bounds: tuple, where: str, stages: bool = False) -> Any:
    """``value`` converted to what ``spec`` describes, or :class:`_Mismatch` saying why not."""
    kinds = spec.kinds
    label = f"{where} "
    if isinstance(value, str) and "[" in where:  # an element given as text (YAML reads 1e-4 so)
        value = _parse_text(value, spec, where)
    if value is None:
        if spec.none_ok or "any" in kinds:
            return None
        raise _Mismatch(f"{label}is None")
    if "any" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _in_range(value, bounds, where)
        return value
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
        raise _Mismatch(f"{label}is True/False")
    if isinstance(value, (int, float)) and ({"int", "float"} & kinds):
        if isinstance(value, float) and "float" not in kinds:
            raise _Mismatch(f"{label}is a float, not an int")
        if not math.isfinite(value):
            raise _Mismatch(f"{label}is not finite")
        _in_range(value, bounds, where)
        return float(value) if "int" not in kinds else value
    if isinstance(value, str) and "str" in kinds:
        return value
    if isinstance(value, (str, Path)) and ({"path", "pretrained"} & kinds):
        return value
    if isinstance(value, Mapping) and "dict" in kinds:
        return dict(value)
    if isinstance(value, (list, tuple)) and "seq" in kinds and spec.elem is not None:
        if not value:
            raise _Mismatch(f"{label}is empty")
        if spec.length is not None and not stages and len(value) != spec.length:
            raise _Mismatch(f"{label}has {len(value)} value(s), not {spec.length}")
        items = [_check(v, spec.elem, bounds, f"{where}[{i}]") for i, v in enumerate(value)]
        return spec.container(items)
    if "seq" in kinds and not isinstance(value, (list, tuple, Mapping)):
        takes = "one value per stage" if stages else "a list"
        raise _Mismatch(f"{label}is a single value, but it takes {takes}")
    raise _Mismatch(f"{label}is of type {type(value).__name__}")


def _parse_text(value: Any, spec: _Spec, name: str) -> Any:
    """Text for a non-text parameter (papermill's ``-p`` passes lists as text) parsed as a
    Python literal with :func:`ast.literal_eval` (no code is run); ``_Mismatch`` if it is none."""
    if not isinstance(value, str):
        return value
    if "pretrained" in spec.kinds:
        return {"True": True, "False": False}.get(value.strip(), value)
    if spec.kinds & {"str", "path"}:
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if "any" in spec.kinds:
            return value
        raise _Mismatch(
            f"{name} is text that is not a literal value (a number, True/False/None, or a "
            "list, tuple or dict of them written out; no code is run)"
        ) from None


def _example(spec: _Spec) -> str:
    return json.dumps(jsonable(spec.example)) if spec.example is not None else ""


def _stage_groups(profiles: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per-stage parameters: sequences with the same length as each other in every profile,
    at least two of them (``{name: the group's names}``)."""
    names = list(next(iter(profiles.values())))
    lengths: dict[tuple, list[str]] = {}
    for name in names:
        values = [p.get(name) for p in profiles.values()]
        if all(isinstance(v, (list, tuple)) for v in values):
            lengths.setdefault(tuple(len(v) for v in values), []).append(name)
    return {n: tuple(g) for g in lengths.values() if len(g) > 1 for n in g}


def resolve_params(
    profiles: dict[str, dict],
    profile: str,
    given: dict[str, Any],
    weights: str | None = None,
    dry_run: Mapping[str, Any] | None = None,
) -> SimpleNamespace:
    """Merge a profile's defaults with the given parameters, checked and converted by type.

    Every check runs here, in the chapter's first code cell, before a run folder is made or any
    data is prepared.

    **Types** are the profiles' (both profiles): a parameter whose profile values are ints takes
    an int (not a bool, not 2.5); floats take a number (an int is fine); a list or tuple takes a
    list of elements typed like the profile's elements (returned as the profile's container);
    ``None`` is allowed where a profile has ``None``; a parameter ``None`` in every profile takes
    anything. Text given for a parameter that is not text (papermill's ``-p epochs "[2, 1]"``
    passes the string ``"[2, 1]"``) is parsed with :func:`ast.literal_eval`: numbers,
    ``True``/``False``/``None`` and lists, tuples and dicts of them, never code.

    **Lengths**: sequence parameters with equal lengths in every profile, two or more of them,
    take one value per stage (e.g. ``sizes``, ``epochs``, ``batch_size``, ``lrs`` of chapter
    002): any number of stages, the same for all of them, and a single value is an error saying
    so. Another sequence (e.g. ``size=(192, 256)``) and every nested one (each stage's ``lrs``)
    keep the profile's length.

    **Ranges**: numbers (also inside sequences) must be positive: ints ``>= 1`` (epochs, batch
    sizes, image sizes, counts), floats ``> 0`` (learning rates, zoom factors); ``>= 0`` where a
    profile holds a 0 (``epochs_frozen``). :data:`RANGES` lists the others: ``seed`` in
    ``[0, 2**32 - 1]``, ``n_folds >= 2``, ``workers``, ``speed_warmup`` and
    ``lr_find_iters >= 0``, ``momentum`` in ``[0, 1)``, ``hold_out`` and ``threshold`` in
    ``(0, 1)``, ``weight_decay``, ``epe_weight``, ``poly_power`` and ``max_rotate >= 0``. The
    parameters named ``*epochs*`` must add up to at least one epoch.

    **Names and files**: ``profile`` is a key of ``profiles``; ``dataset`` a key of
    :data:`lessons_lib.data.DATASETS`; ``data_dir``, if given, an existing folder (a dataset
    other than ``synthetic`` needs one); ``pretrained`` a path to a file holding a
    ``state_dict``, or ``True`` that a full run can honour: torchvision's weights for
    ``weights`` (``resnet34``, ``resnet50``, ``vgg16``; ``None``: any of them) are in torch's
    cache or the download server answers
    (:func:`lessons_lib.models.pretrained.check_pretrained`). A smoke run keeps the offline
    fallback to random weights, recorded in the model's ``weights_source``.

    Args:
        profiles: ``{"smoke": {...}, "full": {...}}``, each naming every parameter.
        profile: Which profile supplies the defaults.
        given: The notebook's parameter values (e.g. ``globals()``); keys the profiles know
            and whose value is not ``None`` override the profile. The :data:`COMMON`
            parameters (``data_dir``, ``seed``, ``out_dir``) are taken from here, and
            ``overwrite`` (see :class:`Run`) when present.
        weights: The torchvision architecture whose ImageNet weights ``pretrained=True`` loads.
        dry_run: The chapter's dry-run settings, used when the given ``dry_run`` is true
            (:func:`dry_run_params`).

    Returns:
        A namespace with every parameter, plus ``profile`` and ``dry_run_images`` (the
        images per split of a dry run, ``None`` otherwise).

    Raises:
        ParameterError: a wrong profile, type, length, range, dataset or ``pretrained`` (every
            wrong parameter, each named with what it expects and the value given).
        lessons_lib.errors.DataError: ``data_dir`` does not exist or is a file, or a real
            dataset was chosen without it.
    """
    if not isinstance(profile, str) or profile not in profiles:
        raise ParameterError(
            {
                "profile": f"parameter profile: expected one of {', '.join(profiles)}; "
                f"got {profile!r} (valid profiles: {', '.join(profiles)})"
            }
        )
    groups = _stage_groups(profiles)
    params = dict(profiles[profile])
    problems: dict[str, str] = {}

    def take(name: str, value: Any, spec: _Spec, bounds: tuple, stages: bool = False) -> None:
        try:
            params[name] = _check(_parse_text(value, spec, name), spec, bounds, name, stages)
        except _Mismatch as why:
            example = _example(spec)
            hint = ""
            if "seq" in spec.kinds and example:
                hint = (
                    f"; on the command line: -p {name} {json.dumps(example)} "
                    f"or -y '{name}: {example}'"
                )
            elif "path" in spec.kinds and not isinstance(value, str):
                hint = f"; on the command line pass a path as text: -r {name} {value}"
            like = f", like {example}" if example and "seq" in spec.kinds else ""
            problems[name] = (
                f"parameter {name}: expected {_describe(spec, bounds, stages=stages)}{like}; "
                f"got {value!r} ({why}){hint}"
            )

    for name in profiles[profile]:
        if given.get(name) is None:
            continue
        values = [p.get(name) for p in profiles.values()]
        spec = _infer(values)
        if name == "pretrained":
            spec = _Spec(frozenset({"bool", "pretrained"}), spec.none_ok, example=True)
        take(name, given[name], spec, _bounds(name, values), stages=name in groups)
    path_spec = _Spec(frozenset({"path"}), none_ok=True)
    for name in COMMON:
        if name in params:
            continue
        params[name] = given.get(name)
        if name == "seed":
            take(name, given.get(name), _Spec(frozenset({"int"}), none_ok=True), RANGES["seed"])
        else:
            take(name, given.get(name), path_spec, RANGES.get(name, (0, True, None, False)))
    for name in OPTIONAL:
        if given.get(name) is not None:
            take(name, given[name], _Spec(frozenset({"bool"})), (0, True, None, False))

    for name, group in groups.items():
        if name != group[0] or any(n in problems for n in group):
            continue
        lengths = {n: len(params[n]) for n in group if isinstance(params[n], (list, tuple))}
        if len(set(lengths.values())) > 1:
            counts = ", ".join(f"{n} {k}" for n, k in lengths.items())
            problems[name] = (
                f"parameters {', '.join(group)}: expected one value per stage each, the same "
                f"number of stages for all; got {counts} values"
            )
    epochs = [n for n in params if "epochs" in n and n not in problems]
    if epochs and not problems:
        leaves = [x for n in epochs for x in _leaves(params[n]) if isinstance(x, (int, float))]
        if leaves and sum(leaves) < 1:
            given_text = ", ".join(f"{n}={params[n]!r}" for n in epochs)
            problems[epochs[0]] = (
                f"parameters {', '.join(epochs)}: expected at least one training epoch in all; "
                f"got {given_text}"
            )
    if "dataset" in params and "dataset" not in problems and params["dataset"] not in DATASETS:
        problems["dataset"] = (
            f"parameter dataset: expected a known dataset, one of {', '.join(DATASETS)}; "
            f"got {params['dataset']!r} (unknown dataset)"
        )
    if problems:
        raise ParameterError(problems)

    data_dir = params.get("data_dir")
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        fix = (
            "pass data_dir=<the folder you unzipped the dataset into> (README: 'Full "
            "reproduction'), or data_dir=None for generated synthetic data"
        )
        if not folder.exists():
            raise DataError("data_dir does not exist", folder, fix)
        if not folder.is_dir():
            raise DataError("data_dir is a file, not a folder", folder, fix)
    elif params.get("dataset") not in (None, "synthetic"):
        raise DataError(
            f"dataset={params['dataset']!r} needs data_dir",
            fix="pass data_dir=<the unzipped dataset folder> (README: 'Full reproduction'),"
            " or use dataset='synthetic'",
        )
    if "pretrained" in params:
        from lessons_lib.models.pretrained import check_pretrained

        try:
            check_pretrained(params["pretrained"], weights, require=profile == "full")
        except ValueError as err:
            raise ParameterError({"pretrained": f"parameter {err}"}) from None
    params["dry_run_images"] = None
    if params.get("dry_run"):
        params = dry_run_params(params, dry_run or {}, given)
    return SimpleNamespace(profile=profile, **params)


def dry_run_params(
    params: dict[str, Any], settings: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """A profile's parameters for a dry run: the same code path, minutes instead of hours.

    A dry run checks, before a GPU-day is spent, that the full profile works on your data and
    fits your GPU: the full input sizes and batch sizes, preparation at full size, every stage,
    fold and model, evaluation at original size, post-processing, figures and ``metrics.json``;
    but one epoch per stage (every ``*epochs*`` parameter: each non-zero value becomes 1) and a
    few images per split: ``dry_run_images`` = :data:`DRY_RUN_ITERATIONS` x the largest batch
    size (two training iterations per epoch), or the chapter's ``images`` setting if larger
    (e.g. enough for every cross-validation fold).

    Args:
        params: The resolved parameters.
        settings: The chapter's ``DRY_RUN``: parameter values for a dry run (e.g. a shorter
            learning-rate finder), and ``images``, a minimum number of images per split. A
            value the user gave explicitly wins over these.
        given: The notebook's parameter values.

    Returns:
        The parameters to run with.
    """
    params = dict(params)

    def one(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(one(v) for v in value)
        return min(value, 1) if isinstance(value, int) and not isinstance(value, bool) else value

    for name in params:
        if "epochs" in name:
            params[name] = one(params[name])
    settings = dict(settings)
    minimum = int(settings.pop("images", 1))
    for name, value in settings.items():
        if given.get(name) is None:
            params[name] = value
    batches = [x for n in params if "batch" in n for x in _leaves(params[n]) if isinstance(x, int)]
    params["dry_run_images"] = max(DRY_RUN_ITERATIONS * max(batches, default=1), minimum)
    return params
