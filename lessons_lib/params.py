"""A chapter's parameters, declared once: type, range, meaning, the paper's value and each
profile's value, and the checks that follow from the declaration.

Every parameter of a chapter is a :class:`Param` in the chapter's recipe
(:mod:`lessons_lib.recipes`). :func:`resolve` is the first call of every chapter: it merges the
chosen profile's values with what the user passed (papermill's ``-p``/``-y``), checks and
converts each value against its declaration, and raises one :class:`ParameterError` listing every
wrong parameter with what it expects and the value given. Nothing is inferred from names or
from example values.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lessons_lib.atomic import jsonable
from lessons_lib.data.layouts import DATASETS, needs_data_dir
from lessons_lib.errors import DataError

__all__ = [
    "DRY_RUN_ITERATIONS",
    "KINDS",
    "NEEDS_WEIGHTS",
    "NOT_APPLICABLE",
    "NOT_GIVEN",
    "PROFILES",
    "Param",
    "ParameterError",
    "injected_names",
    "resolve",
]

PROFILES = ("smoke", "laptop", "colab", "full")
"""The profiles every recipe declares a value for, from cheapest to the paper's own:

* ``smoke``: synthetic data on a CPU, minutes; what CI and the book build run. Its scores show
  that the code path works, nothing about the method.
* ``laptop``: real lesions (PH2 by default) on a CPU within 20 minutes: the paper's method
  unchanged in kind, sized down (input, epochs) and scored against the classical baseline.
* ``colab``: the paper's data on one free-tier GPU (a T4, 16 GB) within an hour by the recipe's
  cost estimate for that card (:data:`lessons_lib.cost.T4`).
* ``full``: the paper's settings on a GPU."""

NEEDS_WEIGHTS = ("laptop", "colab", "full")
"""Profiles in which ``pretrained=True`` must get the ImageNet weights (from torch's cache or by
download) before the run starts; ``smoke`` falls back to random weights offline, and says so."""

KINDS = ("int", "float", "bool", "str", "path", "pretrained")
"""What a :class:`Param` holds: an int, a number, ``True``/``False``, text, a file or folder
path, or ``pretrained`` (``True``, ``False`` or the path of a ``state_dict`` file)."""

DRY_RUN_ITERATIONS = 2
"""Training iterations per epoch in a dry run: a dry run uses ``DRY_RUN_ITERATIONS`` times the
largest batch size as its number of images per split (see :func:`resolve`)."""


class _NotGiven:
    """The paper gives no value (the profile's value is then a deviation to list)."""

    def __repr__(self) -> str:
        return "not given"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
"""A :class:`Param`'s ``paper`` when the paper gives no value."""


class _NotApplicable:
    """A parameter of the course, not of the method (where the data is, processes, seeds)."""

    def __repr__(self) -> str:
        return "-"

    def __bool__(self) -> bool:
        return False


NOT_APPLICABLE: Any = _NotApplicable()
"""A :class:`Param`'s ``paper`` when the parameter is the course's, not the method's (no paper
value to compare: ``data_dir``, worker processes, ``seed``, ``out_dir``...)."""


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


class _Mismatch(Exception):
    """A value that does not fit a declaration (the reason, in words)."""


@dataclass(frozen=True)
class Param:
    """One chapter parameter, declared once.

    Args:
        name: The papermill parameter's name.
        kind: One of :data:`KINDS` (of each element, for a list).
        meaning: One line: what it does (shown by ``papermill --help-notebook``, the recipe
            table and error messages). No ``=`` (papermill's parser stops at one), and
            ``name = None  # meaning`` fits 100 characters (the parameters cell's line).
        values: The value in each profile of :data:`PROFILES` (and any further profile).
        paper: The paper's value; :data:`NOT_GIVEN` when the paper gives none (a deviation to
            list), :data:`NOT_APPLICABLE` for the course's own parameters.
        shape: ``()`` for one value; ``("stage",)`` for one value per training stage (all
            per-stage parameters of a recipe have the same number of stages); an int ``n`` for a
            list of exactly ``n`` values; nested, e.g. ``("stage", 3)``: per stage, 3 values.
        low, high: The allowed range of each number (``None``: unbounded).
        low_open, high_open: The bound itself is excluded.
        choices: The allowed values (text parameters).
        multiple_of: Each int must be a multiple of this.
        none_ok: ``None`` is a valid value (its meaning goes into ``meaning``).
        role: ``"epochs"`` (capped at 1 in a dry run; all of them add up to at least one
            epoch), ``"batch_size"`` (sets a dry run's image count), or ``None``.
        section: Where the recipe table lists it: ``data``, ``model``, ``training``,
            ``evaluation`` or ``run``.
    """

    name: str
    kind: str
    meaning: str
    values: Mapping[str, Any]
    paper: Any = NOT_GIVEN
    shape: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    multiple_of: int | None = None
    none_ok: bool = False
    role: str | None = None
    section: str = "training"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if "=" in self.meaning or "\n" in self.meaning:
            raise ValueError(
                f"Param {self.name}: the meaning must be one line without '=' (papermill's "
                f"--help-notebook stops at it): {self.meaning!r}"
            )
        if len(f"{self.name} = None  # {self.meaning}") > 100:
            raise ValueError(
                f"Param {self.name}: the meaning must fit the parameters cell's 100-character "
                f"line: {self.meaning!r}"
            )
        missing = [p for p in PROFILES if p not in self.values]
        if missing:
            raise ValueError(f"Param {self.name}: no value for profile(s) {', '.join(missing)}")
        for profile, value in self.values.items():
            try:
                self.check(value)
            except _Mismatch as why:
                raise ValueError(
                    f"Param {self.name}: profile {profile}'s value {value!r} does not fit its "
                    f"declaration ({why})"
                ) from None

    # -- descriptions ------------------------------------------------------------------------
    def _range(self) -> str:
        integer = self.kind == "int"
        low, high = self.low, self.high
        if low is None and high is None:
            return ""
        if high is None:
            if integer and self.low_open:
                return f">= {math.floor(low) + 1}"
            return f"> {low}" if self.low_open else f">= {low}"
        if low is None:
            return f"< {high}" if self.high_open else f"<= {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def _scalar_text(self, plural: bool) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        words = {
            "int": ("an int", "ints"),
            "float": ("a number", "numbers"),
            "bool": ("True or False", "True or False values"),
            "str": ("a string", "strings"),
            "path": ("a path", "paths"),
            "pretrained": ("True, False or the path of a state_dict file", "values"),
        }[self.kind]
        text = words[1 if plural else 0]
        extra = [self._range()] if self._range() else []
        if self.multiple_of:
            extra.append(f"a multiple of {self.multiple_of}")
        return " ".join([text, ", ".join(extra)]) if extra else text

    def expects(self) -> str:
        """What the parameter accepts, in words (e.g. ``a list of ints >= 1, one per stage``)."""
        text = self._scalar_text(plural=bool(self.shape))
        for i, dim in enumerate(reversed(self.shape)):
            inner = i < len(self.shape) - 1
            count = "" if dim == "stage" else f"{dim} "
            text = f"{'lists' if inner else 'a list'} of {count}{text}"
            if dim == "stage":
                text += ", one per stage"
        return f"{text} or None" if self.none_ok else text

    # -- checking ----------------------------------------------------------------------------
    def _scalar(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and self.kind not in ("str", "path", "pretrained"):
            value = _literal(value, where)
        kind = self.kind
        if kind == "pretrained":
            if isinstance(value, str):
                value = {"True": True, "False": False}.get(value.strip(), value)
            if isinstance(value, (bool, str, Path)):
                return value
            raise _Mismatch(f"{where} is of type {type(value).__name__}")
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise _Mismatch(f"{where} is not True/False")
        if kind in ("int", "float"):
            if isinstance(value, bool):
                raise _Mismatch(f"{where} is True/False")
            if not isinstance(value, (int, float)):
                raise _Mismatch(f"{where} is of type {type(value).__name__}")
            if kind == "int" and isinstance(value, float):
                raise _Mismatch(f"{where} is a float, not an int")
            if not math.isfinite(value):
                raise _Mismatch(f"{where} is not finite")
            low, high = self.low, self.high
            if low is not None and (value < low or (value == low and self.low_open)):
                raise _Mismatch(f"{where} is out of range")
            if high is not None and (value > high or (value == high and self.high_open)):
                raise _Mismatch(f"{where} is out of range")
            if self.multiple_of and value % self.multiple_of:
                raise _Mismatch(f"{where} is not a multiple of {self.multiple_of}")
            return float(value) if kind == "float" else value
        if kind == "str":
            if not isinstance(value, str):
                raise _Mismatch(f"{where} is of type {type(value).__name__}")
            if self.choices is not None and value not in self.choices:
                close = difflib.get_close_matches(value, [str(c) for c in self.choices], 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _Mismatch(f"{where} is not a valid choice{hint}")
            return value
        if isinstance(value, (str, Path)):  # path
            return value
        raise _Mismatch(f"{where} is of type {type(value).__name__}")

    def _shaped(self, value: Any, shape: tuple, where: str, stages: int | None) -> Any:
        if not shape:
            return self._scalar(value, where)
        if isinstance(value, str):
            value = _literal(value, where)
        if not isinstance(value, (list, tuple)):
            takes = "one value per stage" if shape[0] == "stage" else "a list"
            raise _Mismatch(f"{where} is a single value, but it takes {takes}")
        if not value:
            raise _Mismatch(f"{where} is empty")
        if isinstance(shape[0], int) and len(value) != shape[0]:
            raise _Mismatch(f"{where} has {len(value)} value(s), not {shape[0]}")
        return tuple(
            self._shaped(v, shape[1:], f"{where}[{i}]", stages) for i, v in enumerate(value)
        )

    def check(self, value: Any) -> Any:
        """``value`` converted to what the declaration describes (text given for a number or a
        list is read as a Python literal, never run); ``_Mismatch`` says why it does not fit."""
        if value is None or (isinstance(value, str) and value.strip() == "None" and self.shape):
            if self.none_ok:
                return None
            raise _Mismatch(f"{self.name} is None")
        return self._shaped(value, self.shape, self.name, None)

    def value(self, profile: str) -> Any:
        """The profile's value, converted (lists become tuples)."""
        return self.check(self.values[profile])


def _literal(text: str, where: str) -> Any:
    """Text read as a Python literal with :func:`ast.literal_eval` (no code is run)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _Mismatch(
            f"{where} is text that is not a literal value (a number, True/False/None, or a "
            "list, tuple or dict of them written out; no code is run)"
        ) from None


def injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """The names papermill injected into the running notebook (its ``# Parameters`` cell).

    papermill writes the parameters a user passes as an extra cell after the notebook's
    ``parameters`` cell, whose source starts with the line ``# Parameters``, and only logs a
    warning for a name the notebook does not have. The kernel keeps every executed cell's
    source in ``In``; this reads the last injected cell from there.

    Args:
        namespace: The notebook's ``globals()``.

    Returns:
        The names assigned in the injected cell (empty outside papermill).
    """
    history = namespace.get("In")
    if not isinstance(history, (list, tuple)):
        return []
    for source in reversed(history):
        if isinstance(source, str) and source.startswith("# Parameters\n"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            ]
    return []


def _hint(param: Param, value: Any) -> str:
    if param.shape:
        example = json.dumps(jsonable(param.values[PROFILES[-1]]))
        return f"; on the command line: -p {param.name} {json.dumps(example)}"
    if param.kind == "path" and not isinstance(value, str):
        return f"; on the command line pass a path as text: -r {param.name} {value}"
    return ""


@dataclass
class _Resolution:
    params: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def resolve(
    declared: Sequence[Param],
    profile: str,
    given: Mapping[str, Any],
    weights: str | None = None,
    dry_run: Mapping[str, Any] | None = None,
    constraints: Sequence = (),
) -> SimpleNamespace:
    """A profile's values merged with the given ones, each checked against its :class:`Param`.

    Every check runs here, in the chapter's first code cell, before a run folder is made or any
    data is prepared:

    * **names**: a name papermill injected that the chapter does not declare stops the chapter
      (with the closest declared name): ``-p epoch 1`` would otherwise train with the default;
    * **types, ranges, choices, multiples, lengths** as declared: text given for a non-text
      parameter (papermill's ``-p epochs "[2, 1]"``) is read with :func:`ast.literal_eval`;
    * **stages**: the per-stage parameters (shape ``("stage", ...)``) have the same number of
      stages; the ``role="epochs"`` parameters add up to at least one epoch;
    * **constraints**: the recipe's own checks across parameters (callables
      ``(params) -> {name: message}``);
    * **files**: ``data_dir`` an existing folder (a dataset other than ``synthetic`` needs one;
      on Google Colab, without one, the dataset is downloaded to the machine's disk:
      :func:`lessons_lib.data.download.fetch_for_colab`);
      ``pretrained`` a ``state_dict`` file, or ``True`` that the run can honour outside smoke
      (:func:`lessons_lib.models.pretrained.check_pretrained` for ``weights``).

    Args:
        declared: The chapter's parameters (its recipe's ``params``).
        profile: The profile whose values are the defaults.
        given: The notebook's namespace (``globals()``): a declared name whose value is not
            ``None`` overrides the profile's value.
        weights: The torchvision architecture whose ImageNet weights ``pretrained=True`` loads.
        dry_run: The recipe's dry-run settings (values, and ``images``: the fewest images per
            split), used when ``dry_run`` is true: every ``role="epochs"`` value becomes at most
            1 and ``dry_run_images`` = :data:`DRY_RUN_ITERATIONS` x the largest batch size.
        constraints: Checks across parameters, each ``(params) -> {name: message}``.

    Returns:
        A namespace with every parameter, plus ``profile`` and ``dry_run_images``.

    Raises:
        ParameterError: every wrong parameter, each named with what it expects and the value
            given.
        lessons_lib.errors.DataError: ``data_dir`` does not exist or is a file, or a real
            dataset was chosen without it.
    """
    by_name = {p.name: p for p in declared}
    profiles = list(dict.fromkeys(pr for p in declared for pr in p.values))
    if not isinstance(profile, str) or profile not in profiles:
        raise ParameterError(
            {
                "profile": f"parameter profile: expected one of {', '.join(profiles)}; "
                f"got {profile!r} (valid profiles: {', '.join(profiles)})"
            }
        )
    problems: dict[str, str] = {}
    for name in injected_names(given):
        if name != "profile" and name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), 1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems[name] = (
                f"parameter {name}: this chapter has no parameter {name!r}{hint} "
                f"(its parameters: {', '.join(by_name)})"
            )
    params: dict[str, Any] = {}
    for param in declared:
        value = given.get(param.name)
        try:
            if value is None:
                params[param.name] = param.value(profile)
            else:
                params[param.name] = param.check(value)
        except _Mismatch as why:
            params[param.name] = None
            problems[param.name] = (
                f"parameter {param.name} ({param.meaning}): expected {param.expects()}; "
                f"got {value!r} ({why}){_hint(param, value)}"
            )
    staged = [p.name for p in declared if p.shape[:1] == ("stage",) and p.name not in problems]
    lengths = {n: len(params[n]) for n in staged if params[n] is not None}
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{n} {k}" for n, k in lengths.items())
        problems[staged[0]] = (
            f"parameters {', '.join(staged)}: expected one value per stage each, the same "
            f"number of stages for all; got {counts} values"
        )
    epochs = [p.name for p in declared if p.role == "epochs"]
    if epochs and not any(n in problems for n in epochs):
        total = sum(x for n in epochs for x in _leaves(params[n]) if isinstance(x, (int, float)))
        if total < 1:
            given_text = ", ".join(f"{n}={params[n]!r}" for n in epochs)
            problems[epochs[0]] = (
                f"parameters {', '.join(epochs)}: expected at least one training epoch in all; "
                f"got {given_text}"
            )
    if not problems:
        for constraint in constraints:
            problems.update(constraint(SimpleNamespace(profile=profile, **params)))
    if problems:
        raise ParameterError(problems)

    _check_files(params, profile, weights)
    params["dry_run_images"] = None
    if params.get("dry_run"):
        params = _dry_run(declared, params, dry_run or {}, given)
    return SimpleNamespace(profile=profile, **params)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _leaves(v)]
    return [value]


def _check_files(params: dict[str, Any], profile: str, weights: str | None) -> None:
    if params.get("dataset") is not None and params["dataset"] not in DATASETS:
        raise ParameterError(
            {
                "dataset": f"parameter dataset: expected a known dataset, one of "
                f"{', '.join(DATASETS)}; got {params['dataset']!r} (unknown dataset)"
            }
        )
    data_dir = params.get("data_dir")
    if data_dir is not None:
        _check_folder(
            "data_dir",
            data_dir,
            "pass data_dir=<the folder you unzipped the dataset into> (README: 'From download "
            "to submission'), or data_dir=None for generated synthetic data",
        )
    elif params.get("dataset") not in (None, "synthetic"):
        from lessons_lib.data.download import fetch_for_colab

        fetched = fetch_for_colab(params["dataset"])  # on Colab only: its own disk
        if fetched is None:
            raise needs_data_dir(params["dataset"])
        params["data_dir"] = str(fetched)
    if "external_dataset" in params:
        _check_external(params)
    if "pretrained" in params:
        from lessons_lib.models.pretrained import check_pretrained

        try:
            check_pretrained(params["pretrained"], weights, require=profile in NEEDS_WEIGHTS)
        except ValueError as err:
            raise ParameterError({"pretrained": f"parameter {err}"}) from None


def _check_external(params: dict[str, Any]) -> None:
    """``external_dataset`` and ``external_data_dir`` come together; the folder exists."""
    dataset, folder = params.get("external_dataset"), params.get("external_data_dir")
    if (dataset is None) != (folder is None):
        given, missing = (
            ("external_dataset", "external_data_dir")
            if folder is None
            else ("external_data_dir", "external_dataset")
        )
        raise ParameterError(
            {
                missing: f"parameter {missing}: expected with {given} (an external validation "
                f"needs both the dataset's name and its folder); got {given}="
                f"{params[given]!r} alone"
            }
        )
    if folder is not None:
        fix = "pass external_data_dir=<the folder you unzipped the external dataset into>"
        _check_folder("external_data_dir", folder, fix)


def _check_folder(name: str, value: str, fix: str) -> None:
    """The folder parameter ``name`` exists and is a folder (a :class:`DataError` naming it)."""
    folder = Path(value).expanduser()
    if not folder.exists():
        raise DataError(f"{name} does not exist", folder, fix)
    if not folder.is_dir():
        raise DataError(f"{name} is a file, not a folder", folder, fix)


def _dry_run(
    declared: Sequence[Param],
    params: dict[str, Any],
    settings: Mapping[str, Any],
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """A profile's parameters for a dry run: the same code path, minutes instead of hours.

    One epoch per stage (each non-zero ``role="epochs"`` value becomes 1) and a few images per
    split: :data:`DRY_RUN_ITERATIONS` x the largest ``role="batch_size"`` value, or the
    recipe's ``images`` setting if larger. The recipe's other settings apply unless the user
    gave that parameter.
    """
    params = dict(params)

    def one(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(one(v) for v in value)
        return min(value, 1) if isinstance(value, int) and not isinstance(value, bool) else value

    for param in declared:
        if param.role == "epochs":
            params[param.name] = one(params[param.name])
    settings = dict(settings)
    minimum = int(settings.pop("images", 1))
    for name, value in settings.items():
        if given.get(name) is None:
            params[name] = value
    batches = [
        x
        for p in declared
        if p.role == "batch_size"
        for x in _leaves(params[p.name])
        if isinstance(x, int)
    ]
    params["dry_run_images"] = max(DRY_RUN_ITERATIONS * max(batches, default=1), minimum)
    return params
