"""Tests for :mod:`lessons_lib.losses`: hand-computed values, torch equivalence, shapes, fastai."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lessons_lib.losses import (
    LOSSES,
    BCEWithLogits2d,
    CrossEntropy2d,
    JaccardDistance,
    NLLEPELoss,
    SegmentationLoss,
    activate,
    bce_with_logits,
    cross_entropy_2d,
    epe,
    foreground,
    get_loss,
    jaccard_distance,
    nll_epe,
)
from lessons_lib.losses.base import ACTIVATIONS

# A 2x2 lesion mask and a prediction, used by the hand computations below.
T = [[1.0, 1.0], [0.0, 0.0]]
P = [[0.8, 0.6], [0.2, 0.0]]


def _batch(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None]  # (1, 2, 2)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ----------------------------------------------------------------------------- cross-entropy
def test_cross_entropy_hand_computed() -> None:
    # Pixel logits (0, log 3) -> p(class 1) = 3/4; (0, 0) -> 1/2.
    z = math.log(3.0)
    logits = torch.tensor([[[[0.0, 0.0]], [[z, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert cross_entropy_2d(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_matches_torch_and_accepts_channel_target() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    ref = F.cross_entropy(logits, target)
    assert torch.allclose(cross_entropy_2d(logits, target), ref)
    assert torch.allclose(CrossEntropy2d()(logits, target[:, None]), ref)
    assert torch.allclose(cross_entropy_2d(logits, target.float()), ref)
    per_image = cross_entropy_2d(logits, target, reduction="none")
    assert per_image.shape == (3,)
    assert torch.allclose(per_image[1], F.cross_entropy(logits[1:2], target[1:2]))
    assert torch.allclose(cross_entropy_2d(logits, target, reduction="sum"), per_image.sum())


def test_cross_entropy_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="C >= 2"):
        cross_entropy_2d(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cross_entropy_2d(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target must be"):
        cross_entropy_2d(torch.zeros(2, 2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="non-integer"):
        cross_entropy_2d(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropy2d(reduction="avg")


# ----------------------------------------------------------------------------- BCE
def test_bce_hand_computed() -> None:
    logits = _batch([[0.8, 0.6], [0.2, 0.1]]).apply_(_logit)[:, None]  # (1, 1, 2, 2)
    expected = -(math.log(0.8) + math.log(0.6) + math.log(1 - 0.2) + math.log(1 - 0.1)) / 4
    # 0/1 mask given as (N, H, W) long, the way fastai's MaskBlock delivers it
    got = bce_with_logits(logits, _batch(T).long())
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_bce_matches_torch_for_all_layouts() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 5, 5, generator=g)
    target = (torch.rand(2, 5, 5, generator=g) > 0.5).float()
    ref = F.binary_cross_entropy_with_logits(logits[:, 0], target)
    assert torch.allclose(bce_with_logits(logits, target), ref)
    assert torch.allclose(bce_with_logits(logits[:, 0], target[:, None]), ref)
    assert torch.allclose(BCEWithLogits2d()(logits, target.long()), ref)


def test_bce_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        bce_with_logits(torch.zeros(2, 2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="target must be"):
        bce_with_logits(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4))


def test_bce_activation_and_decodes_threshold_probabilities() -> None:
    loss = BCEWithLogits2d()
    logits = torch.tensor([[[[-2.0, 0.5], [3.0, -0.1]]]])
    probs = loss.activation(logits)
    assert torch.allclose(probs, torch.sigmoid(logits))
    decoded = loss.decodes(probs)
    assert decoded.shape == (1, 2, 2) and decoded.dtype == torch.long
    assert decoded.tolist() == [[[0, 1], [1, 0]]]
    assert BCEWithLogits2d(thresh=0.7).decodes(probs).tolist() == [[[0, 0], [1, 0]]]


# ----------------------------------------------------------------------------- Jaccard
def test_jaccard_hand_computed() -> None:
    # sum tp = 0.8 + 0.6 = 1.4; sum t^2 = 2; sum p^2 = 0.64 + 0.36 + 0.04 = 1.04
    expected = 1 - 1.4 / (2 + 1.04 - 1.4)
    got = jaccard_distance(_batch(P), _batch(T), activation="none", eps=0.0)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    with_eps = jaccard_distance(_batch(P), _batch(T), activation="none", eps=1.0)
    assert with_eps.item() == pytest.approx(1 - 2.4 / 2.64, rel=1e-9)
    # the same probabilities given as logits of the default sigmoid output
    logits = _batch(P).clamp(1e-12, 1 - 1e-12).apply_(_logit)
    assert jaccard_distance(logits, _batch(T), eps=0.0).item() == pytest.approx(expected)
    loss = JaccardDistance(output_activation="none", eps=0.0)
    assert loss(_batch(P)[:, None], _batch(T)).item() == pytest.approx(expected, rel=1e-9)


def test_jaccard_per_image_vs_per_batch() -> None:
    # image 1 = (P, T) above; image 2: t = [1,0,0,0], p = [0.5,0.5,0,0]
    # -> tp = 0.5, t^2 = 1, p^2 = 0.5, distance 1 - 0.5 / 1.0 = 0.5
    probs = torch.cat([_batch(P), _batch([[0.5, 0.5], [0.0, 0.0]])])
    target = torch.cat([_batch(T), _batch([[1.0, 0.0], [0.0, 0.0]])])
    d1 = 1 - 1.4 / 1.64
    per_image = jaccard_distance(probs, target, activation="none", eps=0.0, reduction="none")
    assert per_image.tolist() == pytest.approx([d1, 0.5])
    mean = jaccard_distance(probs, target, activation="none", eps=0.0)
    assert mean.item() == pytest.approx((d1 + 0.5) / 2)
    total = jaccard_distance(probs, target, activation="none", eps=0.0, reduction="sum")
    assert total.item() == pytest.approx(d1 + 0.5)
    batch = jaccard_distance(probs, target, activation="none", eps=0.0, per_image=False)
    assert batch.item() == pytest.approx(1 - 1.9 / (3 + 1.54 - 1.9))
    with pytest.raises(ValueError, match="per_image"):
        JaccardDistance(per_image=False, reduction="none")
    with pytest.raises(ValueError, match="eps"):
        jaccard_distance(probs, target, activation="none", eps=-1.0)


def test_jaccard_perfect_and_empty_predictions() -> None:
    target = torch.tensor([[[0, 1, 1], [0, 1, 0]]])
    logits = (target.float() * 2 - 1) * 30  # sigmoid = 1 on the lesion, 0 elsewhere
    assert jaccard_distance(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert jaccard_distance(target.float(), target, activation="none").item() == 0.0
    empty = torch.zeros(1, 2, 3)
    assert jaccard_distance(empty, empty, activation="none").item() == 0.0
    # all wrong: nothing in common -> distance 1
    all_wrong = jaccard_distance(1 - target.float(), target, activation="none", eps=0.0)
    assert all_wrong.item() == 1.0


def test_jaccard_two_channel_input_needs_softmax() -> None:
    g = torch.Generator().manual_seed(2)
    logits2 = torch.randn(2, 2, 4, 4, generator=g)
    target = (torch.rand(2, 4, 4, generator=g) > 0.5).long()
    # softmax over (a, b) gives channel 1 = sigmoid(b - a)
    one_channel = (logits2[:, 1] - logits2[:, 0])[:, None]
    assert torch.allclose(
        jaccard_distance(logits2, target, activation="softmax"),
        jaccard_distance(one_channel, target),
    )
    loss = JaccardDistance(output_activation="softmax")
    assert loss.output_activation == "softmax"
    assert torch.allclose(loss(logits2, target), jaccard_distance(one_channel, target))
    assert torch.equal(loss.decodes(loss.activation(logits2)), logits2.argmax(1))
    # a 2-channel output is never passed through a sigmoid
    with pytest.raises(ValueError, match="sigmoid output has 1 channel, got 2"):
        jaccard_distance(logits2, target)
    with pytest.raises(ValueError, match="sigmoid output has 1 channel, got 2"):
        JaccardDistance()(logits2, target)
    with pytest.raises(ValueError, match="softmax output has at least 2 channels, got 1"):
        loss(one_channel, target)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        jaccard_distance(torch.zeros(2, 3, 4, 4), target, activation="softmax")
    with pytest.raises(ValueError, match="unknown output activation 'tanh'"):
        JaccardDistance(output_activation="tanh")


# ----------------------------------------------------------------------------- EPE and NLL+EPE
def test_epe_hand_computed() -> None:
    # D = M - G = [[-0.5, 0], [0, 0]]; forward differences, 0 on the last column / row:
    # D_x = [[0.5, 0], [0, 0]], D_y = [[0.5, 0], [0, 0]] -> only pixel (0, 0) is non-zero.
    m = _batch([[0.5, 0.0], [0.0, 0.0]])
    g = _batch([[1.0, 0.0], [0.0, 0.0]])
    eps = 1e-6
    expected = (math.sqrt(0.5 + eps) - math.sqrt(eps)) / 4  # other 3 pixels: sqrt(eps)-sqrt(eps)
    assert epe(m, g, eps=eps).item() == pytest.approx(expected, rel=1e-9)
    # a vertical edge predicted one column too far right: G = [[1,0,0]], M = [[1,1,0]]
    # G_x = [-1, 0, 0], M_x = [0, -1, 0] -> |diff| = 1 at two of three pixels
    got = epe(_batch([[1.0, 1.0, 0.0]]), _batch([[1.0, 0.0, 0.0]]), eps=eps)
    assert got.item() == pytest.approx(2 * (math.sqrt(1 + eps) - math.sqrt(eps)) / 3, rel=1e-9)


def test_epe_is_zero_for_perfect_prediction_and_for_constant_offset() -> None:
    target = torch.tensor([[[0, 1, 1], [0, 1, 0], [1, 1, 0]]])
    assert epe(target.float(), target).item() == 0.0
    assert epe(target.float()[:, None], target[:, None]).item() == 0.0
    # EPE only sees edges: a uniform shift of the map has the same derivatives
    assert epe(target.float() * 0 + 0.3, torch.zeros_like(target)).item() == 0.0


def test_nll_epe_hand_computed() -> None:
    # two-class logits (0, logit p) -> softmax foreground probability p
    m_rows = [[0.8, 0.6], [0.2, 0.1]]
    logits = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    logits[0, 1] = _batch(m_rows)[0].apply_(_logit)
    target = _batch(T).long()
    nll = -(math.log(0.8) + math.log(0.6) + math.log(1 - 0.2) + math.log(1 - 0.1)) / 4
    # D = M - G = [[-0.2, -0.4], [0.2, 0.1]]
    # D_x = [[-0.2, 0], [-0.1, 0]], D_y = [[0.4, 0.5], [0, 0]]
    eps = 1e-6
    mags = [0.2**2 + 0.4**2, 0.5**2, 0.1**2, 0.0]
    epe_val = sum(math.sqrt(s + eps) - math.sqrt(eps) for s in mags) / 4
    assert nll_epe(logits, target, alpha=0.0).item() == pytest.approx(nll, rel=1e-9)
    assert epe(_batch(m_rows), target).item() == pytest.approx(epe_val, rel=1e-9)
    got = nll_epe(logits, target)  # paper: alpha = 0.5
    assert got.item() == pytest.approx(nll + 0.5 * epe_val, rel=1e-9)
    assert NLLEPELoss(alpha=0.25)(logits, target).item() == pytest.approx(nll + 0.25 * epe_val)


def test_nll_epe_accepts_log_probabilities_and_matches_torch_nll() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 6, 6, generator=g)
    target = (torch.rand(2, 6, 6, generator=g) > 0.5).long()
    log_p = F.log_softmax(logits, dim=1)
    assert torch.allclose(nll_epe(log_p, target), nll_epe(logits, target), atol=1e-6)
    assert torch.allclose(nll_epe(logits, target, alpha=0.0), F.nll_loss(log_p, target))


def test_nll_epe_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-class"):
        nll_epe(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha"):
        NLLEPELoss(alpha=-1.0)
    with pytest.raises(ValueError, match="eps"):
        epe(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), eps=0.0)


# ----------------------------------------------------------------------------- all losses
CASES = [  # (registry name, output channels, arguments)
    ("cross_entropy", 2, {}),
    ("bce_with_logits", 1, {}),
    ("jaccard_distance", 1, {}),
    ("jaccard_distance", 2, {"output_activation": "softmax"}),
    ("nll_epe", 2, {}),
]
IDS = [f"{name}-{channels}ch" for name, channels, _ in CASES]


@pytest.mark.parametrize(("name", "channels", "kwargs"), CASES, ids=IDS)
def test_gradients_are_finite_and_non_zero(name: str, channels: int, kwargs: dict) -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, channels, 6, 6, generator=g, requires_grad=True)
    target = (torch.rand(2, 6, 6, generator=g) > 0.5).long()
    get_loss(name, **kwargs)(logits, target).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_epe_gradient_finite_at_perfect_prediction() -> None:
    target = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    pred = target.clone().requires_grad_(True)
    epe(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


def test_registry_builds_by_name_and_lists_names_on_error() -> None:
    assert set(LOSSES) == {name for name, _, _ in CASES}
    loss = get_loss("nll_epe", alpha=0.3)
    assert isinstance(loss, NLLEPELoss) and loss.alpha == 0.3
    assert isinstance(get_loss("jaccard_distance", eps=0.0), JaccardDistance)
    with pytest.raises(ValueError, match="unknown loss 'dice'") as err:
        get_loss("dice")
    for name in LOSSES:
        assert name in str(err.value)


# ----------------------------------------------------------------------------- the contract
def test_activate_refuses_a_channel_count_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="sigmoid output has 1 channel, got 2.*softmax loss"):
        activate(torch.zeros(1, 2, 4, 4), "sigmoid")
    with pytest.raises(ValueError, match="softmax output has at least 2 channels, got 1"):
        activate(torch.zeros(1, 1, 4, 4), "softmax")
    with pytest.raises(ValueError, match="unknown output activation 'relu'"):
        activate(torch.zeros(1, 1, 4, 4), "relu")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        activate(torch.zeros(4, 4), "sigmoid")


def test_activate_gives_probabilities() -> None:
    x = torch.tensor([[[[-1.0, 0.0], [2.0, 5.0]]]])  # (1, 1, 2, 2)
    assert torch.equal(activate(x, "sigmoid"), torch.sigmoid(x))
    assert torch.equal(activate(x[:, 0], "sigmoid"), torch.sigmoid(x))  # (N, H, W) accepted
    two = torch.cat([-x, x], 1)
    probs = activate(two, "softmax")
    assert torch.allclose(probs.sum(1), torch.ones(1, 2, 2))
    assert torch.allclose(probs[:, 1], torch.sigmoid(2 * x[:, 0]))
    assert torch.equal(activate(probs, "none"), probs)  # already probabilities


def test_foreground_takes_the_lesion_channel() -> None:
    probs = torch.rand(2, 2, 3, 3)
    assert torch.equal(foreground(probs), probs[:, 1])
    assert torch.equal(foreground(probs[:, :1]), probs[:, 0])
    assert torch.equal(foreground(probs[:, 0]), probs[:, 0])
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        foreground(torch.rand(2, 3, 3, 3))


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_declares_its_output_activation(name: str) -> None:
    loss = get_loss(name)
    assert isinstance(loss, SegmentationLoss)
    assert loss.output_activation in ACTIVATIONS
    (channels,) = {c for n, c, kwargs in CASES if n == name and not kwargs}
    assert loss.output_activation == ("sigmoid" if channels == 1 else "softmax")
    # the declared activation is what fastai's get_preds applies, and it refuses the other layout
    wrong = torch.zeros(1, 3 - channels, 4, 4)
    with pytest.raises(ValueError, match="channel"):
        loss.activation(wrong)


def test_declared_activations() -> None:
    assert CrossEntropy2d().output_activation == "softmax"
    assert NLLEPELoss().output_activation == "softmax"
    assert BCEWithLogits2d().output_activation == "sigmoid"
    assert JaccardDistance().output_activation == "sigmoid"
    for kind in ACTIVATIONS:
        assert JaccardDistance(output_activation=kind).output_activation == kind


def test_decodes_one_and_two_channels() -> None:
    probs1 = torch.tensor([[[[0.2, 0.6], [0.8, 0.5]]]])  # (1, 1, 2, 2)
    assert JaccardDistance().decodes(probs1).tolist() == [[[0, 1], [1, 0]]]
    assert JaccardDistance(thresh=0.7).decodes(probs1).tolist() == [[[0, 0], [1, 0]]]
    assert JaccardDistance().decodes(probs1[:, 0]).tolist() == [[[0, 1], [1, 0]]]
    # two channels: argmax, whatever the threshold
    probs2 = torch.cat([1 - probs1, probs1], 1)
    for loss in (CrossEntropy2d(), NLLEPELoss(), JaccardDistance("softmax", thresh=0.9)):
        decoded = loss.decodes(probs2)
        assert decoded.dtype == torch.long
        assert decoded.tolist() == [[[0, 1], [1, 0]]]


# ----------------------------------------------------------------------------- fastai
@pytest.mark.parametrize(("name", "channels", "kwargs"), CASES, ids=IDS)
def test_works_as_fastai_loss_func(name: str, channels: int, kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastai.data.core import DataLoaders
        from fastai.data.load import DataLoader
        from fastai.learner import Learner
        from fastai.torch_core import TensorImage, TensorMask

    torch.manual_seed(5)
    n, h, w = 8, 8, 8
    xs = TensorImage(torch.randn(n, 3, h, w))
    ys = TensorMask((torch.randn(n, h, w) > 0).long())
    items = [(xs[i], ys[i]) for i in range(n)]
    dls = DataLoaders(
        DataLoader(items, bs=4, shuffle=True), DataLoader(items, bs=4), device=torch.device("cpu")
    )
    loss = get_loss(name, **kwargs)
    learn = Learner(dls, nn.Conv2d(3, channels, 3, padding=1), loss_func=loss)
    with learn.no_logging():
        learn.fit(1, lr=1e-2)
        probs, targs, decoded = learn.get_preds(with_decoded=True)
        _, _, losses = learn.get_preds(with_loss=True)
    assert math.isfinite(learn.recorder.values[-1][0])
    assert probs.shape == (n, channels, h, w)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert decoded.shape == (n, h, w) and decoded.dtype == torch.long
    assert set(decoded.unique().tolist()) <= {0, 1}
    with torch.no_grad():
        out = learn.model(xs.as_subclass(torch.Tensor))
    expected = out.argmax(1) if channels == 2 else (out[:, 0] > 0).long()
    assert torch.equal(decoded, expected)
    assert losses.shape == (n,)  # fastai set reduction="none": one loss per image
    assert loss.reduction == "mean"  # ...and restored it
    assert losses.mean().item() == pytest.approx(loss(out, ys).item(), rel=1e-4)
