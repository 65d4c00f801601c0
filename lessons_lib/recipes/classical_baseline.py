"""The "Data and metrics" chapter: the classical baseline (Otsu's threshold with hand-made pre-
and post-processing), scored on one split. No network is trained, so this recipe declares only
parameters: which data, at what working size."""

from __future__ import annotations

from lessons_lib.params import NOT_APPLICABLE, Param
from lessons_lib.recipes import Recipe, dataset_param, run_params, synthetic_params


class ClassicalBaselineRecipe(Recipe):
    """The data chapter's parameters; the baseline's own steps are
    :class:`lessons_lib.baseline.ClassicalBaseline`."""

    chapter = "data_and_metrics"
    title = "classical baseline: Otsu threshold + morphology"
    params = (
        dataset_param(
            "isic2017",
            paper=NOT_APPLICABLE,
            meaning="synthetic | isic2017 | isic2018 | isic2016 | ph2 | folder",
        ),
        *synthetic_params(n_synth=32, synth_size=160),
        Param(
            "split",
            "str",
            "the split the baseline is scored on",
            {"smoke": "test", "laptop": "test", "colab": "test", "full": "test"},
            choices=("train", "valid", "test"),
            section="data",
        ),
        Param(
            "work_size",
            "int",
            "shorter side in pixels of the prepared images the baseline segments",
            {"smoke": 256, "laptop": 256, "colab": 256, "full": 256},
            low=1,
            section="data",
        ),
        *run_params(
            prepare_workers={"smoke": 1, "laptop": 2, "colab": 2, "full": 2}, loader_workers=None
        ),
    )


RECIPE = ClassicalBaselineRecipe()
