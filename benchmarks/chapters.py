"""The chapters' full profiles as the benchmarks need them, read from each chapter's recipe.

Nothing about a chapter is written here: the network (registry name and arguments), the training
stages (input size and batch size), the augmentation, the input transforms, the normalisation,
the input channels and the worker counts all come from the chapter's recipe
(``lessons_lib/recipes/<module>.py``, :func:`lessons_lib.recipes.get_recipe`) with its full
profile's values (``R.profile("full")``), so that changing a recipe changes the benchmarks, the
notebook and the cost estimate alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lessons_lib.recipes import Recipe

PROFILE = "full"
"""The profile the benchmarks measure."""


@dataclass
class Chapter:
    """One chapter's full profile: its network and how it trains.

    Args:
        chapter: Notebook stem (the recipe's ``chapter``).
        recipe: The chapter's recipe (:class:`lessons_lib.recipes.Recipe`).
        params: The profile's values (``recipe.profile("full")``), as a notebook's ``P``.
        model: Registry name and keyword arguments of the network (``recipe.network``, without
            downloading pretrained weights: ``recipe.cost_overrides``).
        stages: ``((height, width), batch size)`` of each distinct training configuration of
            ``recipe.cost_stages`` (stages that train no image left out).
        prepare_size: Shorter side of the prepared cache the loaders read: the largest shorter
            side of the stages' inputs (what each notebook passes to ``get_data``).
        in_channels: Network input channels (``recipe.in_channels``).
        normalize: ``(mean, std)`` per channel, or ``None`` (``recipe.normalize``).
    """

    chapter: str
    recipe: Recipe
    params: SimpleNamespace
    model: tuple[str, dict]
    stages: list[tuple[tuple[int, int], int]]
    prepare_size: int
    in_channels: int
    normalize: tuple | None

    @property
    def loader_workers(self) -> int | None:
        """DataLoader processes the profile trains with (``None``: 0 on a CPU, up to 8 on a
        GPU)."""
        return self.params.loader_workers

    @property
    def prepare_workers(self) -> int:
        """Processes the profile prepares the dataset with."""
        return self.params.prepare_workers

    def augmentation(self) -> list:
        """The training augmentation (fresh fastai batch transforms, ``recipe.augmentation``)."""
        return list(self.recipe.augmentation(self.params))

    def input_transforms(self) -> list:
        """The further batch transforms (fresh, ``recipe.input_transforms``)."""
        return list(self.recipe.input_transforms(self.params))

    def build(self, device: str = "meta"):
        """The network with random weights on ``device`` (``meta``: shapes only)."""
        import torch

        from lessons_lib.models import build_model

        name, kwargs = self.model
        with torch.device(device):
            return build_model(name, **kwargs)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def chapter(name: str, profile: str = PROFILE) -> Chapter:
    """The :class:`Chapter` of ``name`` (a notebook stem) from its recipe's ``profile``."""
    from lessons_lib.recipes import get_recipe

    R = get_recipe(name)  # noqa: N806 -- the chapters' name for the recipe
    P = R.profile(profile)  # noqa: N806
    registry_name, kwargs = R.network(P)
    stages = [
        (_hw(stage.size), stage.batch_size)
        for stage in R.cost_stages(P, R.splits(P))
        if stage.images_trained > 0  # e.g. a stage of 0 epochs
    ]
    stages = list(dict.fromkeys(stages))  # the learning-rate finder repeats a stage's pipeline
    if not stages:
        raise ValueError(f"{name}: the {profile} profile's recipe trains no stage")
    return Chapter(
        chapter=R.chapter,
        recipe=R,
        params=P,
        model=(registry_name, {**kwargs, **R.cost_overrides(P)}),
        stages=stages,
        prepare_size=max(min(hw) for hw, _ in stages),
        in_channels=R.in_channels(P),
        normalize=R.normalize(P),
    )


def chapters(names: Iterable[str] | None = None, profile: str = PROFILE) -> list[Chapter]:
    """The chapters' full profiles (``names``: chapter ids; default every chapter, in order)."""
    from lessons_lib.recipes import CHAPTERS

    return [chapter(name, profile) for name in (CHAPTERS if names is None else names)]


def names_from_command_line(
    doc: str, argv: list[str] | None = None, others: Iterable[str] = ()
) -> list[str] | None:
    """The chapter ids a per-chapter benchmark run as a script was given (``None``: all).

    Args:
        doc: The benchmark module's docstring (its first paragraph is ``--help``'s text).
        argv: The arguments (default: the command line's).
        others: Ids it also measures besides the recipes' chapters (the smoke benchmark's
            notebooks without a recipe).

    Returns:
        The ids in the order given, or ``None`` when none were.

    Raises:
        SystemExit: On ``--help``, and on an unknown id, with the valid ones listed.
    """
    import argparse

    from lessons_lib.recipes import CHAPTERS

    valid = [*CHAPTERS, *others]
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "chapters",
        nargs="*",
        metavar="CHAPTER",
        help=f"{', '.join(valid)} (or a chapter's number, e.g. 004); default: all",
    )
    args = parser.parse_args(argv)
    return chapter_ids(args.chapters, valid, parser) or None


def chapter_ids(given: Iterable[str], valid: Iterable[str], parser) -> list[str]:
    """The chapter ids that a benchmark's command line names: each a whole id
    (``004_vgg16_fcn``) or its number (``004``), in the order given. The one rule for every
    benchmark script (``run.py``, ``laptop.py`` and the per-chapter ones).

    Args:
        given: The names on the command line.
        valid: The ids the script knows.
        parser: The script's ``argparse`` parser, whose ``error`` reports unknown names.

    Raises:
        SystemExit: From ``parser.error``, on a name that is no id nor any id's number, with
            the valid ids listed.
    """
    given, valid = list(given), list(valid)
    by_number = {v.split("_", 1)[0]: v for v in valid if v.split("_", 1)[0].isdigit()}
    found = [name if name in valid else by_number.get(name) for name in given]
    unknown = [name for name, id_ in zip(given, found, strict=True) if id_ is None]
    if unknown:
        parser.error(f"unknown chapter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return found
