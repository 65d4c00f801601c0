"""Each paper's recipe, declared once: the one place a chapter's settings live.

A recipe (one module per chapter, a subclass of :class:`Recipe`, as nnU-Net keeps its trainer
variants) declares:

* every parameter once (:class:`~lessons_lib.params.Param`): type, allowed range, one-line
  meaning, the paper's value and its value in each profile;
* the network (registry name and arguments, :meth:`Recipe.network`);
* the augmentation and input transforms (:meth:`Recipe.augmentation`,
  :meth:`Recipe.input_transforms`);
* the optimiser with every hyper-parameter written out (:meth:`Recipe.optimizer`) and the
  learning-rate schedule (:meth:`Recipe.schedule`);
* the training stages from which the cost estimate is computed (:meth:`Recipe.cost_stages`),
  counted with the dataset's published split sizes
  (:data:`lessons_lib.data.PUBLISHED_SPLITS`).

The chapter notebook, the benchmarks (``benchmarks/chapters.py``), the cost estimate and the
parameter checks all read it. ``python -m lessons_lib.recipes sync`` writes each notebook's
papermill ``parameters`` cell from its recipe (``make recipes``); a test checks they agree.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import nn

from lessons_lib.data.layouts import DATASETS, PUBLISHED_SPLITS
from lessons_lib.params import NOT_APPLICABLE, NOT_GIVEN, PROFILES, Param, resolve
from lessons_lib.reported import Reported
from lessons_lib.training.optim import AdamSpec, Schedule, SGDSpec, read_optimizer

__all__ = [
    "CHAPTERS",
    "LAPTOP_DATASET",
    "OTHER_CHAPTERS",
    "Recipe",
    "dataset_param",
    "get_recipe",
    "profile_gpu",
    "recipes",
    "run_params",
    "synthetic_params",
]

CHAPTERS: dict[str, str] = {
    "000_lesionseg": "lessons_lib.recipes.lesionseg",
    "001_cdnn29": "lessons_lib.recipes.cdnn29",
    "002_resnet34_unet": "lessons_lib.recipes.resnet34_unet",
    "003_slsdeep": "lessons_lib.recipes.slsdeep",
    "004_vgg16_fcn": "lessons_lib.recipes.vgg16_fcn",
}
"""Paper chapter id (the notebook's file stem) -> the module holding its recipe (``RECIPE``)."""

OTHER_CHAPTERS: dict[str, str] = {"data_and_metrics": "lessons_lib.recipes.classical_baseline"}
"""Chapters that reproduce no paper but declare their parameters the same way."""


def profile_gpu(profile: str):
    """The GPU a profile's cost is estimated for: Colab's free T4 for ``colab``, an A100 40GB
    (:data:`lessons_lib.cost.A100_40GB`) for every other profile."""
    from lessons_lib.cost import A100_40GB, T4

    return T4 if profile == "colab" else A100_40GB


SYNTHETIC_SPLITS_OF = 4
"""A synthetic dataset's validation and test splits hold ``n_synth // 4`` images each."""


LAPTOP_DATASET = "ph2"
"""The laptop profile's dataset: PH2's 200 dermoscopy images (765x572) are small enough to
prepare and train on within minutes on a CPU, and a classical threshold already scores well on
them, so a network must really segment to beat it (``python -m lessons_lib data download ph2
--accept-terms``)."""


def dataset_param(full: str, paper: Any, meaning: str | None = None, **profiles: str) -> Param:
    """The ``dataset`` parameter: synthetic in the smoke profile, :data:`LAPTOP_DATASET` in the
    laptop one, ``full`` (the paper's) in the colab and full ones; ``profiles`` overrides."""
    return Param(
        "dataset",
        "str",
        meaning or f"which dataset, read from data_dir (the paper's: {paper})",
        {"smoke": "synthetic", "laptop": LAPTOP_DATASET, "colab": full, "full": full, **profiles},
        paper=paper,
        choices=DATASETS,
        section="data",
    )


def synthetic_params(n_synth: int = 32, synth_size: int = 160) -> list[Param]:
    """``data_dir``, ``n_synth`` and ``synth_size``: where the data is, or how much synthetic
    data the smoke profile generates."""
    return [
        Param(
            "data_dir",
            "path",
            "the unzipped dataset; None generates synthetic data",
            {p: None for p in PROFILES},
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="data",
        ),
        Param(
            "n_synth",
            "int",
            "synthetic data only: training images (validation and test: a quarter each)",
            {"smoke": n_synth, "laptop": None, "colab": None, "full": None},
            low=1,
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="data",
        ),
        Param(
            "synth_size",
            "int",
            "synthetic data only: image width in pixels",
            {"smoke": synth_size, "laptop": None, "colab": None, "full": None},
            low=16,
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="data",
        ),
    ]


def run_params(
    prepare_workers: Mapping[str, int], loader_workers: Mapping[str, int | None] | None
) -> list[Param]:
    """The parameters every chapter has, with the same meaning in each: processes, seed, output
    folder, GPUs, dry run.

    Args:
        prepare_workers: Per profile: processes decoding and resizing the dataset once.
        loader_workers: Per profile: DataLoader processes feeding training (``make bench``
            measures how many a GPU step needs); ``None``: 0 on a CPU, ``min(8, cores)`` with a
            GPU. ``loader_workers=None`` (no training): no ``loader_workers``, ``n_gpus`` or
            ``dry_run`` parameter.
    """
    every = {p: None for p in PROFILES}
    declared = [
        Param(
            "prepare_workers",
            "int",
            "processes decoding and resizing the dataset once, before training",
            dict(prepare_workers),
            low=1,
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "loader_workers",
            "int",
            "DataLoader processes; None picks 0 on a CPU, up to 8 with a GPU",
            dict(loader_workers or {p: None for p in PROFILES}),
            low=0,
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "seed",
            "int",
            "seed of every random choice (splits, initial weights, shuffling, augmentation)",
            {p: 0 for p in PROFILES},
            low=0,
            high=2**32 - 1,
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "out_dir",
            "path",
            "the run folder; None gives runs/<chapter>/<profile>-<dataset>",
            every,
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "overwrite",
            "bool",
            "True replaces an earlier run with other parameters in out_dir",
            {p: False for p in PROFILES},
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "n_gpus",
            "int",
            "GPUs of this machine to train on, data-parallel, the batch size per GPU",
            {p: 1 for p in PROFILES},
            low=1,
            paper=NOT_APPLICABLE,
            section="run",
        ),
        Param(
            "external_dataset",
            "str",
            "a dataset never trained on, every image scored after training; None: none",
            every,
            none_ok=True,
            choices=DATASETS,
            paper=NOT_APPLICABLE,
            section="evaluation",
        ),
        Param(
            "external_data_dir",
            "path",
            "the external dataset's unzipped folder (PH2 suits ISIC-trained models)",
            every,
            none_ok=True,
            paper=NOT_APPLICABLE,
            section="evaluation",
        ),
        Param(
            "dry_run",
            "bool",
            "True runs the profile's code path and sizes, one epoch per stage, a few images",
            {p: False for p in PROFILES},
            paper=NOT_APPLICABLE,
            section="run",
        ),
    ]
    if loader_workers is None:
        no_training = (
            "loader_workers",
            "n_gpus",
            "external_dataset",
            "external_data_dir",
            "dry_run",
        )
        return [p for p in declared if p.name not in no_training]
    return declared


class Recipe:
    """A paper's recipe: a subclass per chapter overrides the hooks below and lists ``params``.

    Class attributes:
        chapter: The chapter id (the notebook's file stem).
        title: Short citation, as run records and the leaderboard name the paper.
        params: Every parameter, in the order of the notebook's ``parameters`` cell.
        weights: The torchvision architecture whose ImageNet weights ``pretrained=True`` loads
            (``None``: the paper trains from scratch).
        dry_run: A dry run's settings: parameter values, and ``images``, the fewest images per
            split it needs (see :func:`lessons_lib.params.resolve`).
        mixed_precision: fp16 training on a GPU (:func:`~lessons_lib.training.make_learner`).
        reported: The paper's numbers, each with how it was computed
            (:class:`~lessons_lib.reported.Reported`); a chapter attaches those of what it
            scored with :meth:`reported_for`.
    """

    chapter: ClassVar[str]
    title: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    weights: ClassVar[str | None] = None
    dry_run: ClassVar[Mapping[str, Any]] = {}
    mixed_precision: ClassVar[bool] = True
    reported: ClassVar[tuple[Reported, ...]] = ()

    def reported_for(self, dataset: str, split: str, variant: str | None = None) -> list[Reported]:
        """The paper's numbers for ``split`` of ``dataset`` and the method ``variant`` (``None``:
        the paper's own method): none for another dataset (PH2, synthetic data), so a run on
        other images never shows the paper's numbers as if they were comparable."""
        return [
            r
            for r in self.reported
            if r.dataset == dataset and r.split == split and r.variant == variant
        ]

    # -- parameters ----------------------------------------------------------------------------
    def param(self, name: str) -> Param:
        """The declaration of ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.chapter} has no parameter {name!r}")

    def constraints(self, P: SimpleNamespace) -> dict[str, str]:  # noqa: N803
        """Checks across parameters: ``{name: message}`` for each that fails (none here)."""
        return {}

    def resolve(
        self, profile: str, given: Mapping[str, Any], check_files: bool = True
    ) -> SimpleNamespace:
        """The run's parameters: the profile's values, overridden by the ones given (the
        notebook's ``globals()``), each checked against its declaration
        (:func:`lessons_lib.params.resolve`)."""
        return resolve(
            self.params,
            profile,
            given,
            weights=self.weights,
            dry_run=self.dry_run,
            constraints=[self.constraints],
        )

    def profile(self, profile: str) -> SimpleNamespace:
        """A profile's values as they are declared (no user input, no file checks)."""
        values = {p.name: p.value(profile) for p in self.params}
        return SimpleNamespace(profile=profile, dry_run_images=None, **values)

    def profiles(self) -> list[str]:
        """The profiles this recipe declares values for."""
        return list(dict.fromkeys(pr for p in self.params for pr in p.values))

    def table(self, P: SimpleNamespace | None = None) -> pd.DataFrame:  # noqa: N803
        """The recipe as a table: each parameter's meaning, the paper's value and each
        profile's value (and this run's, given ``P``)."""

        rows = []
        for p in self.params:
            if p.section == "run" and p.name != "prepare_workers":
                continue  # bookkeeping, the same in every chapter
            row = {"parameter": p.name, "meaning": p.meaning, "paper": _shown(p.paper)}
            row.update({pr: _shown(p.value(pr)) for pr in self.profiles()})
            if P is not None:
                row["this run"] = _shown(getattr(P, p.name))
            rows.append(row)
        return pd.DataFrame(rows).set_index("parameter")

    def deviations(self, profile: str) -> pd.DataFrame:
        """The parameters whose value in ``profile`` is not the paper's: each with the paper's
        value (``not given`` where the paper is silent: the course's choice), the profile's and
        its meaning. The course's own parameters (``data_dir``, workers, seed...) are left out.
        """
        rows = []
        for p in self.params:
            if p.paper is NOT_APPLICABLE:
                continue
            value = p.value(profile)
            paper = p.paper if p.paper is NOT_GIVEN else p.check(p.paper)
            if paper is NOT_GIVEN or value != paper:
                rows.append(
                    {
                        "parameter": p.name,
                        "paper": _shown(paper),
                        profile: _shown(value),
                        "meaning": p.meaning,
                    }
                )
        return pd.DataFrame(rows, columns=["parameter", "paper", profile, "meaning"]).set_index(
            "parameter"
        )

    # -- hooks (override) ------------------------------------------------------------------------
    def network(self, P: SimpleNamespace) -> tuple[str, dict[str, Any]]:  # noqa: N803
        """The registry name and arguments of the network
        (:func:`lessons_lib.models.build_model`)."""
        raise NotImplementedError

    def in_channels(self, P: SimpleNamespace) -> int:  # noqa: N803
        """Input channels of the network."""
        return 3

    def loss(self, P: SimpleNamespace) -> nn.Module:  # noqa: N803
        """The training loss (a :mod:`lessons_lib.losses` class, its settings from ``P``)."""
        raise NotImplementedError

    def augmentation(self, P: SimpleNamespace) -> list:  # noqa: N803
        """The training augmentation (fastai batch transforms; ``[]``: none)."""
        return []

    def input_transforms(self, P: SimpleNamespace) -> list:  # noqa: N803
        """Further batch transforms for training and prediction (colour channels,
        standardisation), after the augmentation."""
        return []

    def normalize(self, P: SimpleNamespace) -> tuple | None:  # noqa: N803
        """Per-channel ``(mean, std)`` normalisation, or ``None`` (default: ImageNet's, as
        fastai does for a pretrained encoder)."""
        from fastai.vision.core import imagenet_stats

        return imagenet_stats

    def optimizer(self, P: SimpleNamespace) -> AdamSpec | SGDSpec:  # noqa: N803
        """The optimiser, every hyper-parameter written out."""
        raise NotImplementedError

    def schedule(self, P: SimpleNamespace) -> Schedule:  # noqa: N803
        """The learning-rate schedule of each training stage."""
        raise NotImplementedError

    def cost_stages(self, P: SimpleNamespace, splits: Mapping[str, int]) -> list:  # noqa: N803
        """How a run with ``P`` trains (:class:`lessons_lib.cost.Stage` each), with the
        dataset's split sizes ``splits``."""
        raise NotImplementedError

    def predicted_images(self, P: SimpleNamespace, splits: Mapping[str, int]) -> int:  # noqa: N803
        """Images predicted once after training (validation, test, ablations)."""
        return splits.get("valid", 0) + splits.get("test", 0)

    # -- derived ---------------------------------------------------------------------------------
    def build_model(self, P: SimpleNamespace, **override: Any) -> nn.Module:  # noqa: N803
        """The network of ``P`` (``override`` replaces registry arguments, e.g. an ablation's)."""
        from lessons_lib.models import build_model

        name, kwargs = self.network(P)
        return build_model(name, **{**kwargs, **override})

    def splits(self, P: SimpleNamespace) -> dict[str, int]:  # noqa: N803
        """Images per split of ``P``'s dataset: the published counts, or a synthetic
        dataset's."""
        if P.dataset == "synthetic":
            n = P.n_synth or 40
            return {"train": n, "valid": n // SYNTHETIC_SPLITS_OF, "test": n // SYNTHETIC_SPLITS_OF}
        if P.dataset not in PUBLISHED_SPLITS:
            raise ValueError(f"no published split sizes for dataset {P.dataset!r}")
        return dict(PUBLISHED_SPLITS[P.dataset])

    def estimate_cost(self, P: SimpleNamespace | str = "full", gpu: Any = None):  # noqa: N803
        """The expected cost of a run with ``P`` (or a profile's values) on ``gpu``
        (:func:`lessons_lib.cost.estimate_cost`; default: the profile's GPU,
        :func:`profile_gpu`)."""
        from lessons_lib.cost import estimate_cost

        if isinstance(P, str):
            P = self.profile(P)  # noqa: N806
        gpu = gpu or profile_gpu(P.profile)
        splits = self.splits(P)
        with torch.device("meta"):  # shapes only: nothing is computed or allocated
            net = self.build_model(P, **self.cost_overrides(P))
        return estimate_cost(
            net,
            self.cost_stages(P, splits),
            gpu=gpu,
            optimizer=self.optimizer(P),
            mixed_precision=self.mixed_precision,
            in_channels=self.in_channels(P),
            predicted_images=self.predicted_images(P, splits),
        )

    def cost_overrides(self, P: SimpleNamespace) -> dict[str, Any]:  # noqa: N803
        """Registry arguments for the cost estimate's network (no weight download)."""
        kwargs = self.network(P)[1]
        return {"pretrained": False} if "pretrained" in kwargs else {}

    def describe(self, P: SimpleNamespace, learn: Any = None) -> dict[str, Any]:  # noqa: N803
        """What the run trained with, for ``metrics.json``: the declared optimiser and schedule,
        the augmentation and input transforms, and (given the learner) the loss with its settings
        and the optimiser's class and hyper-parameters per parameter group, as read from them
        after training."""
        described: dict[str, Any] = {
            "recipe": f"{type(self).__module__}.{type(self).__name__}",
            "network": {"name": self.network(P)[0], **_plain(self.network(P)[1])},
            "optimizer": self.optimizer(P).as_dict(),
            "schedule": self.schedule(P).as_dict(),
            "augmentation": [_describe_transform(t) for t in self.augmentation(P)],
            "input_transforms": [_describe_transform(t) for t in self.input_transforms(P)],
            "normalize": _plain(self.normalize(P)),
            "mixed_precision": bool(self.mixed_precision and torch.cuda.is_available()),
        }
        if learn is not None and getattr(learn, "loss_func", None) is not None:
            described["loss"] = _describe_loss(learn.loss_func)
        if learn is not None and getattr(learn, "opt", None) is not None:
            described["optimizer_used"] = read_optimizer(learn.opt)
        return described

    def source(self) -> list:
        """The hooks a student reads: network, loss, augmentation, input transforms, optimiser,
        schedule (for ``show_source``)."""
        own = type(self)
        hooks = ("network", "loss", "augmentation", "input_transforms", "optimizer", "schedule")
        return [getattr(own, name) for name in hooks if name in own.__dict__]


def _shown(value: Any) -> str:
    """A recipe value as the recipe tables show it."""
    if value is NOT_GIVEN:
        return "not given"
    if value is NOT_APPLICABLE:
        return "-"
    if isinstance(value, tuple):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    return "None" if value is None else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value.item() if hasattr(value, "item") else value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()  # a NumPy scalar
    return repr(value)


def _describe_loss(loss: Any) -> dict[str, Any]:
    """A loss's class and its settings (public numbers, text and flags), and those of the loss
    it wraps (fastai's ``BaseLoss`` keeps it as ``func``)."""
    described: dict[str, Any] = {"class": type(loss).__name__}
    for key, value in vars(loss).items():
        setting = isinstance(value, (bool, int, float, str)) and not key.startswith("_")
        if setting and key != "training":
            described[key] = value
    inner = getattr(loss, "func", None)
    if isinstance(inner, torch.nn.Module):
        described["func"] = _describe_loss(inner)
    return described


def _describe_transform(tfm: Any) -> dict[str, Any]:
    """A transform's class and its settings (its constructor's arguments, as stored), with the
    steps fastai merged into it: the affine functions of one ``AffineCoordTfm`` (flips,
    rotation, zoom) and the lighting functions of one ``LightingTfm`` (brightness, contrast),
    each with its own probability."""
    names = inspect.signature(type(tfm).__init__).parameters
    settings: dict[str, Any] = {}
    for name in names:
        for attr in (name, f"_{name}"):
            if name != "self" and hasattr(tfm, attr):
                settings[name] = _plain(copy.copy(getattr(tfm, attr)))
                break
    for attr in ("p", "size", "mode", "pad_mode"):
        if attr not in settings and isinstance(getattr(tfm, attr, None), (int, float, str)):
            settings[attr] = getattr(tfm, attr)
    steps = []
    for step in [*(getattr(tfm, "aff_fs", None) or []), *(getattr(tfm, "coord_fs", None) or [])]:
        func = getattr(step, "func", step)
        keywords = getattr(step, "keywords", {})
        steps.append({"step": getattr(func, "__name__", repr(func)), **_plain(keywords)})
    for step in getattr(tfm, "fs", None) or []:
        own = {k: v for k, v in vars(step).items() if not k.startswith("_")}
        steps.append({"step": type(step).__name__.lstrip("_"), **_plain(own)})
    if steps:
        settings["steps"] = steps
    return {"class": type(tfm).__name__, **settings}


def get_recipe(chapter: str) -> Recipe:
    """The recipe of ``chapter`` (a notebook's file stem).

    Raises:
        KeyError: an unknown chapter (the message lists the valid ones).
    """
    modules = {**CHAPTERS, **OTHER_CHAPTERS}
    if chapter not in modules:
        raise KeyError(f"no recipe for chapter {chapter!r}; valid: {', '.join(modules)}")
    return importlib.import_module(modules[chapter]).RECIPE


def recipes() -> list[Recipe]:
    """Every paper chapter's recipe, in chapter order."""
    return [get_recipe(c) for c in CHAPTERS]


def parameters_cell(recipe: Recipe) -> str:
    """The papermill ``parameters`` cell of ``recipe``'s notebook: ``profile`` first, then every
    parameter as ``name = None  # meaning`` (None: the profile's value)."""
    lines = [
        '# Parameters (papermill). None means "the profile\'s value" (the recipe table below).',
        f'profile = "smoke"  # {" | ".join(recipe.profiles())}: which values the run starts from',
    ]
    lines += [f"{p.name} = None  # {p.meaning}" for p in recipe.params]
    return "\n".join(lines)
