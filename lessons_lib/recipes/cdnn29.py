"""Chapter 001: Yuan & Lo, CDNN-29, a convolutional-deconvolutional network with seven colour
channels (ISIC 2017 Task 1, the challenge's winner).

The paper trains a 29-layer encoder-decoder from scratch on 192x256 images with seven input
channels (RGB, HSV and the L of CIELAB), the soft Jaccard distance as loss, Adam at a learning
rate of 0.003 in Theano/Lasagne, batch 18, "600 iterations for each fold" of a five-fold
cross-validation, random flips, shifts, rotations, scaling and per-channel contrast
normalisation, and averages "the six models" before a dual-threshold post-processing. It gives no
augmentation strengths and no Adam constants other than the learning rate: Lasagne's Adam has
beta1 0.9, beta2 0.999, eps 1e-8 and no weight decay, and those are the values used here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from lessons_lib.params import NOT_APPLICABLE, Param
from lessons_lib.recipes import Recipe, dataset_param, run_params, synthetic_params
from lessons_lib.reported import ORIGINAL, row
from lessons_lib.training.optim import AdamSpec, Schedule

TABLES_METRICS = ("accuracy", "dice", "jaccard", "sensitivity", "specificity")
"""The columns of the paper's Tables II-V: AC, DI, JA, SE, SP."""

_data_dir, _n_synth, _synth_size = synthetic_params(n_synth=32, synth_size=160)


class CDNN29Recipe(Recipe):
    """The paper's recipe: CDNN-29 on 7 channels, Jaccard loss, Adam, 5 folds + a sixth model."""

    chapter = "001_cdnn29"
    title = "Yuan & Lo, CDNN-29, ISIC 2017"
    weights = None  # trained from scratch, as the paper
    dry_run = dict(images=6)  # at least one image per cross-validation fold
    # Tables II-V: (variant, split, tables, TABLES_METRICS). The test scores are the
    # challenge's own (per-image means at original size, Sec. IV-A: "the challenge evaluation
    # metrics"); the validation scores were computed by the authors with the same metrics.
    reported = tuple(
        number
        for variant, split, source, values in (
            ("CDNN-29 RGB+HSV+L", "test", "Tables III and V", (0.934, 0.849, 0.765, 0.825, 0.975)),
            ("CDNN-29 RGB+HSV+L", "valid", "Tables II and IV", (0.953, 0.865, 0.783, 0.879, 0.979)),
            ("CDNN-29 RGB", "test", "Table V", (0.931, 0.840, 0.754, 0.813, 0.976)),
            ("CDNN-29 RGB", "valid", "Table IV", (0.951, 0.848, 0.765, 0.868, 0.976)),
            ("CDNN-19", "test", "Table III", (0.921, 0.824, 0.736, 0.796, 0.979)),
            ("CDNN-19", "valid", "Table II", (0.945, 0.839, 0.749, 0.854, 0.982)),
        )
        for number in row(
            dict(zip(TABLES_METRICS, values, strict=True)),
            averaging="per_image",
            resolution=ORIGINAL,
            dataset="isic2017",
            split=split,
            source=source,
            variant=variant,
        )
    )
    params = (
        dataset_param("isic2017", paper="isic2017"),
        _data_dir,
        _n_synth,
        Param(
            "n_test",
            "int",
            "synthetic data only: validation and test images each; None: a quarter of n_synth",
            {"smoke": 8, "laptop": None, "colab": None, "full": None},
            paper=NOT_APPLICABLE,
            low=1,
            none_ok=True,
            section="data",
        ),
        _synth_size,
        Param(
            "size",
            "int",
            "network input (height, width) in pixels",
            # laptop: half the paper's side, the paper's 3:4 aspect kept (a step of 8 images takes
            # about 1.3 s on 2 cores).
            {"smoke": (48, 64), "laptop": (96, 128), "colab": (192, 256), "full": (192, 256)},
            paper=(192, 256),
            shape=(2,),
            low=16,
            multiple_of=16,  # four 2x2 max-poolings
            section="data",
        ),
        Param(
            "channels",
            "str",
            "rgbhsvl: RGB + HSV + L of CIELAB (the paper); rgb: the RGB-only ablation",
            {"smoke": "rgbhsvl", "laptop": "rgbhsvl", "colab": "rgbhsvl", "full": "rgbhsvl"},
            paper="rgbhsvl",
            choices=("rgbhsvl", "rgb"),
            section="data",
        ),
        Param(
            "epochs",
            "int",
            "epochs per model (the paper's 600 iterations per fold, read as epochs)",
            # laptop: as many as three models (two folds and the one on all images) fit in 20
            # minutes with room at (96, 128). At the paper's rate 40 epochs took 12.8 minutes on
            # 2 quiet cores, but 19.8 on a slower machine of the same kind, at the budget's edge;
            # at 1.3e-3 there 40 took 19.0 minutes and scored test JA 0.721 (external 0.647) on a
            # PH2-sized stand-in, 30 took 14.1 and scored 0.740 (0.643): the same within the
            # noise, and 30 leaves room (benchmarks/laptop-stand-in.md).
            # colab: 150 of the paper's 600 epochs, so that the six models fit an hour on a T4 by
            # the chapter's estimate (0.88 h).
            {"smoke": 2, "laptop": 30, "colab": 150, "full": 600},
            paper=600,
            low=1,
            role="epochs",
        ),
        Param(
            "batch_size",
            "int",
            "images per mini-batch (per GPU)",
            # laptop: 8 gives 9 updates an epoch from a fold of PH2's 140 training images (18
            # gives 4).
            {"smoke": 4, "laptop": 8, "colab": 18, "full": 18},
            paper=18,
            low=1,
            role="batch_size",
        ),
        Param(
            "lr",
            "float",
            "Adam learning rate, kept constant",
            # laptop: 1.3e-3, the paper's rate scaled with the batch (8 of its 18): a smaller batch
            # makes each step noisier. On a PH2-sized stand-in, 40 epochs on the same machine:
            # test JA 0.624 (external 0.574) at 3e-3, 0.721 (0.647) at 1.3e-3.
            {"smoke": 0.003, "laptop": 0.0013, "colab": 0.003, "full": 0.003},
            paper=0.003,
            low=0,
            low_open=True,
        ),
        Param(
            "n_folds",
            "int",
            "cross-validation folds of the training set, one model each",
            # laptop: 2 folds and the model on all images: an ensemble of three, in the time one
            # model of the paper's length would not fit.
            {"smoke": 5, "laptop": 2, "colab": 5, "full": 5},
            paper=5,
            low=2,
        ),
        Param(
            "full_model",
            "bool",
            "True: one more model, on all training images (our reading of the sixth)",
            {"smoke": True, "laptop": True, "colab": True, "full": True},
            section="model",
        ),
        Param(
            "contrast_aug",
            "bool",
            "augmentation: random per-channel contrast normalisation of training images",
            {"smoke": True, "laptop": True, "colab": True, "full": True},
            paper=True,
            section="data",
        ),
        Param(
            "postprocess",
            "str",
            "dual_threshold (the paper) or none (probability > 0.5, the ablation)",
            {
                "smoke": "dual_threshold",
                "laptop": "dual_threshold",
                "colab": "dual_threshold",
                "full": "dual_threshold",
            },
            paper="dual_threshold",
            choices=("dual_threshold", "none"),
            section="evaluation",
        ),
        Param(
            "postprocess_at",
            "str",
            "post-process at the network's size (model) or the original size (original)",
            {"smoke": "model", "laptop": "model", "colab": "model", "full": "model"},
            choices=("model", "original"),
            section="evaluation",
        ),
        Param(
            "resize",
            "str",
            "interpolation back to each image's original size",
            {"smoke": "bilinear", "laptop": "bilinear", "colab": "bilinear", "full": "bilinear"},
            choices=("bilinear", "nearest", "bicubic"),
            section="evaluation",
        ),
        *run_params(
            prepare_workers={"smoke": 1, "laptop": 2, "colab": 2, "full": 2},
            # make bench: 5 loader processes keep up with an A100 at 192x256
            # laptop: None, 0 on a CPU (both cores train); colab: Colab has 2 CPU cores
            loader_workers={"smoke": None, "laptop": None, "colab": 2, "full": 5},
        ),
    )

    def variant(self, P: SimpleNamespace) -> str:  # noqa: N803
        """The row of Tables IV and V this run trains: CDNN-29 with its input channels."""
        return {"rgbhsvl": "CDNN-29 RGB+HSV+L", "rgb": "CDNN-29 RGB"}[P.channels]

    def loss(self, P: SimpleNamespace):  # noqa: N803
        """The training loss: the paper's Jaccard distance on the sigmoid output."""
        from lessons_lib.losses import JaccardDistance

        return JaccardDistance()

    def network(self, P: SimpleNamespace) -> tuple[str, dict[str, Any]]:  # noqa: N803
        """CDNN-29 of Table I (one output, dropout 0.5 at the two places the paper names),
        from random weights."""
        return "cdnn29", dict(in_channels=self.in_channels(P))

    def in_channels(self, P: SimpleNamespace) -> int:  # noqa: N803
        """7 for RGB + HSV + L (the paper), 3 for the RGB-only ablation (Tables IV and V)."""
        return {"rgbhsvl": 7, "rgb": 3}[P.channels]

    def augmentation(self, P: SimpleNamespace) -> list:  # noqa: N803
        """Flips, shifts, rotations and scaling (Sec. III-B) as one affine warp; the paper gives
        no strengths: ours."""
        from lessons_lib.transforms import geometric_augment

        return geometric_augment(
            max_rotate=15.0,  # degrees, either way
            min_zoom=0.9,
            max_zoom=1.1,
            max_shift=0.1,  # fraction of each side
            p_affine=0.75,  # rotation, scaling and shift each; flips: p 0.5 each way
        )

    def input_transforms(self, P: SimpleNamespace) -> list:  # noqa: N803
        """The seven channels, computed on the batch after the geometric augmentation, then
        (training only) the random per-channel contrast normalisation."""
        from lessons_lib.transforms import CDNNChannels, RandomChannelContrast

        contrast = [RandomChannelContrast(low=(0.0, 5.0), high=(95.0, 100.0), p=0.5)]
        return [CDNNChannels(P.channels)] + (contrast if P.contrast_aug else [])

    def normalize(self, P: SimpleNamespace) -> None:  # noqa: N803
        """None: "no other pre-processing was performed"; all seven channels are in [0, 1]."""
        return None

    def optimizer(self, P: SimpleNamespace) -> AdamSpec:  # noqa: N803
        """Adam as Lasagne's ``lasagne.updates.adam`` (the paper's library) defines it."""
        return AdamSpec(
            beta1=0.9,  # not given in the paper: Lasagne's default
            beta2=0.999,  # not given in the paper: Lasagne's default
            eps=1e-8,  # not given in the paper: Lasagne's default
            weight_decay=0.0,  # the paper names no weight decay; Lasagne's Adam has none
            decoupled=False,  # no weight decay to decouple
            decay_bn_and_bias=False,  # no weight decay at all
        )

    def schedule(self, P: SimpleNamespace) -> Schedule:  # noqa: N803
        """Constant: the paper names no schedule (Adam "adaptively adjusts the learning rate")."""
        return Schedule("constant")

    def cost_stages(self, P: SimpleNamespace, splits: Mapping[str, int]) -> list:  # noqa: N803
        """The fold models (each holds one fold out and scores it every epoch) and the model on
        all training images (the official validation set watched)."""
        from lessons_lib.cost import Stage

        n_train = splits["train"]
        n_fold = n_train // P.n_folds
        common = dict(size=P.size, batch_size=P.batch_size, epochs=P.epochs)
        stages = [
            Stage(
                f"{P.n_folds} fold models",
                images=n_train - n_fold,
                models=P.n_folds,
                eval_images=n_fold,
                **common,
            )
        ]
        if P.full_model:
            stages.append(
                Stage(
                    "model on all images",
                    images=n_train,
                    eval_images=splits.get("valid", 0),
                    **common,
                )
            )
        return stages

    def predicted_images(self, P: SimpleNamespace, splits: Mapping[str, int]) -> int:  # noqa: N803
        """Cross-validation (each fold model its fold), every model on validation and test for
        the ensemble, and the three test-set ablations (two of the ensemble, one single model)."""
        n_models = P.n_folds + int(P.full_model)
        valid, test = splits.get("valid", 0), splits.get("test", 0)
        return splits["train"] + n_models * (valid + test) + (2 * n_models + 1) * test


RECIPE = CDNN29Recipe()
