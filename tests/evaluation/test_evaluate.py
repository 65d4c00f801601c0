"""lessons_lib.evaluation with several Learners (the CDNN-29 ensemble) and ``postprocess_at``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ADAM
from torch import nn

from lessons_lib import chapter
from lessons_lib.data import split_pairs
from lessons_lib.evaluation import evaluate, predict_probs, to_size
from lessons_lib.evaluation.postprocess import dual_threshold
from lessons_lib.losses import JaccardDistance
from lessons_lib.training import make_learner, segmentation_dls

SIZE = (16, 24)


def _model(weight: float, bias: float) -> nn.Module:
    """A 1x1 convolution: logit = weight * (R + G + B) + bias, so outputs are known."""
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(weight)
        conv.bias.fill_(bias)
    return conv


@pytest.fixture(scope="module")
def setting(synthetic_data, tmp_path_factory):
    """The shared prepared synthetic dataset and three untrained 1x1-conv Learners."""
    chapter.setup(0)
    _, data = synthetic_data
    train, valid = split_pairs(data.pairs("train"), 2, seed=0)
    learners = []
    for i, (w, b) in enumerate([(4.0, -5.0), (-3.0, 2.0), (1.0, -1.0)]):
        dls = segmentation_dls(train, valid, SIZE, 2, normalize=None)
        out = tmp_path_factory.mktemp(f"m{i}")
        learners.append(make_learner(dls, _model(w, b), JaccardDistance(), out, ADAM))
    return data, learners


def test_one_learner_and_a_list_of_one_agree(setting) -> None:
    data, (a, *_) = setting
    per_a, sum_a, small_a = evaluate(a, data, "valid", resize="bilinear")
    per_l, sum_l, small_l = evaluate([a], data, "valid", resize="bilinear")
    assert per_a.equals(per_l) and sum_a == sum_l
    assert all(np.array_equal(small_a[k], small_l[k]) for k in small_a)


def test_ensemble_averages_probabilities_before_thresholding(setting) -> None:
    data, (a, b, c) = setting
    pairs = data.pairs("valid")
    singles = [list(predict_probs(m, pairs)) for m in (a, b, c)]
    per, summary, small = evaluate((a, b, c), data, "valid", resize="bilinear", threshold=0.5)
    assert summary["n_images"] == len(pairs)
    for i, entry in enumerate(data.entries("valid")):
        mean = (singles[0][i] + singles[1][i] + singles[2][i]) / 3
        np.testing.assert_allclose(small[entry["id"]], mean, atol=1e-3)  # float16 thumbnails
    # the ensemble differs from each of its members (the fixture's models disagree)
    for m in (a, b, c):
        assert not evaluate(m, data, "valid", resize="bilinear")[0].equals(per)


def test_postprocess_at_model_size_then_resize_the_mask(setting, tmp_path) -> None:
    from PIL import Image

    data, (a, b, _) = setting
    seen = []

    def spy(prob: np.ndarray) -> np.ndarray:
        seen.append(prob.shape)
        return dual_threshold(prob)

    evaluate(
        [a, b],
        data,
        "valid",
        resize="bilinear",
        postprocess=spy,
        postprocess_at="model",
        save_dir=tmp_path,
    )
    assert set(seen) == {SIZE}  # post-processed at the network's input size
    pairs = data.pairs("valid")
    singles = zip(predict_probs(a, pairs), predict_probs(b, pairs), strict=True)
    means = [(pa + pb) / 2 for pa, pb in singles]
    for entry, mean in zip(data.entries("valid"), means, strict=True):
        w, h = entry["orig_size"]
        small_mask = dual_threshold(mean).astype(np.float32)
        expected = to_size(small_mask, (w, h), "bilinear") > 0.5
        saved = np.asarray(Image.open(tmp_path / f"{entry['id']}_segmentation.png"))
        assert saved.shape == (h, w) and set(np.unique(saved).tolist()) <= {0, 255}
        assert np.array_equal(saved > 127, expected)

    seen.clear()
    evaluate([a, b], data, "valid", resize="nearest", postprocess=spy)  # default: original
    assert set(seen) == {tuple(e["orig_size"][::-1]) for e in data.entries("valid")}


def test_bad_arguments(setting) -> None:
    data, (a, *_) = setting
    with pytest.raises(ValueError, match="postprocess_at"):
        evaluate(a, data, "valid", postprocess_at="halfway")
    with pytest.raises(ValueError, match="at least one"):
        evaluate([], data, "valid")
