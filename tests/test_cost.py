"""lessons_lib.cost: a run's GPU hours and memory, checked against numbers derived by hand."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from lessons_lib.cost import (
    A100_40GB,
    GPU,
    OPTIMIZER_STATES,
    RTX_4090,
    CostEstimate,
    Stage,
    estimate_cost,
)

GIB = 2**30


def hand_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1))


# Hand counts of hand_net on one 1x8x8 image (tests/models/test_complexity.py derives the
# saved activations):
PARAMS = 2 * 1 * 3 * 3 + 1 * 2 + 1  # conv1 weight 18; conv2 weight 2 and bias 1: 21
# forward: a multiply-add counts 2; conv1 makes 2x8x8 outputs of 9 multiply-adds each, conv2
# 1x8x8 outputs of 2
FORWARD = 2 * (2 * 64 * 9) + 2 * (64 * 2)  # 2304 + 256 = 2560
# backward: conv2's input gradient (256) and weight gradient (256); conv1's weight gradient
# only (2304): its input needs no gradient
TRAIN = FORWARD + (256 + 256) + 2304  # 5376
SAVED_PER_IMAGE = 64 * 4 + 128 * 4  # the input and the ReLU's output, fp32: 768 bytes
# a made-up GPU whose peak is 1000 FLOP/s in fp32 and 4000 in fp16
SLOW = GPU("slow", memory_gb=1.0, fp32_tflops=1e-9, fp16_tflops=4e-9)


def stage(**kw) -> Stage:
    # 102 images per epoch in batches of 4: fastai drops the last 2, so 100 are trained
    return Stage(**{"name": "s", "size": 8, "batch_size": 4, "epochs": 10, "images": 102} | kw)


def test_a_small_network_by_hand_fp32_adam() -> None:
    est = estimate_cost(
        hand_net(),
        [stage(eval_images=20)],
        gpu=SLOW,
        efficiency=0.5,
        mixed_precision=False,
        optimizer="adam",
        in_channels=1,
    )
    (s,) = est.stages
    assert est.parameters == PARAMS
    assert (s.flops_forward, s.flops_train) == (FORWARD, TRAIN)
    assert s.images_trained == 100 * 10 and s.images_evaluated == 20 * 10
    assert est.flops == 1000 * TRAIN + 200 * FORWARD == 5_888_000
    # 50% of 1000 FLOP/s: 500 FLOP/s, so 11,776 s
    assert est.sustained_flops == pytest.approx(500)
    assert est.gpu_hours == pytest.approx(5_888_000 / 500 / 3600)  # 3.271 hours
    # memory: fp32 weights 84 B, gradients 84 B, Adam's two averages 168 B (336 B), plus the
    # activations of a batch of 4: 4 x 768 = 3072 B; 3408 B in all
    assert est.state_bytes() == {"weights": 84, "gradients": 84, "optimiser": 168}
    assert s.activation_bytes == 4 * SAVED_PER_IMAGE
    assert est.memory_bytes(s) == 3408
    assert est.peak_memory_gb == pytest.approx(3408 / GIB)
    assert est.fits


def test_a_small_network_by_hand_mixed_precision_sgd() -> None:
    est = estimate_cost(
        hand_net(),
        [stage()],
        gpu=SLOW,
        efficiency=0.25,
        optimizer="sgd_momentum",
        in_channels=1,
    )
    # fp16 tensor cores: 25% of 4000 FLOP/s; 1000 images x 5376 FLOPs = 5,376,000 FLOPs
    assert est.gpu_hours == pytest.approx(1000 * TRAIN / 1000 / 3600)
    # weights 84 + fp16 copies 42 + gradients 84 + momentum 84 = 294 B, plus half the fp32
    # activations: 4 x 768 / 2 = 1536 B
    assert est.state_bytes() == {
        "weights": 84,
        "fp16 weight copies": 42,
        "gradients": 84,
        "optimiser": 84,
    }
    assert est.memory_bytes(est.stages[0]) == 294 + 1536
    plain = estimate_cost(hand_net(), [stage()], gpu=SLOW, optimizer="sgd", in_channels=1)
    assert plain.state_bytes()["optimiser"] == 0


def test_memory_decides_whether_it_fits() -> None:
    kw = dict(mixed_precision=False, in_channels=1)
    exact = GPU("exact", memory_gb=3408 / GIB, fp32_tflops=1.0, fp16_tflops=1.0)
    assert estimate_cost(hand_net(), [stage()], gpu=exact, **kw).fits
    smaller = GPU("smaller", memory_gb=3407 / GIB, fp32_tflops=1.0, fp16_tflops=1.0)
    est = estimate_cost(hand_net(), [stage()], gpu=smaller, **kw)
    assert not est.fits and "does NOT fit" in est.summary()


def test_frozen_parameters_need_no_gradient_or_optimiser_state() -> None:
    net = hand_net()
    net[0].weight.requires_grad_(False)  # 18 of the 21 parameters
    est = estimate_cost(net, [stage()], mixed_precision=False, in_channels=1)
    assert est.parameters == 3
    assert est.state_bytes() == {"weights": 84, "gradients": 12, "optimiser": 24}
    assert net[0].weight.device.type == "cpu"  # the model itself is not moved


def test_stages_add_up_and_prediction_is_forward_only() -> None:
    stages = [stage(name="small", size=8), stage(name="large", size=(16, 8), batch_size=2)]
    est = estimate_cost(
        hand_net(), stages, gpu=SLOW, mixed_precision=False, in_channels=1, predicted_images=7
    )
    small, large, prediction = est.stages
    assert large.flops_train == 2 * TRAIN and large.size == (16, 8)  # twice the pixels
    assert large.images_trained == 102 // 2 * 2 * 10
    assert large.activation_bytes == 2 * 2 * SAVED_PER_IMAGE  # batch 2 of twice the pixels
    assert prediction.name == "prediction" and prediction.size == (16, 8)
    assert prediction.images_trained == 0 and prediction.images_evaluated == 7
    assert prediction.flops == 7 * 2 * FORWARD
    assert est.memory_bytes(prediction) == 84  # the weights alone
    assert est.flops == small.flops + large.flops + prediction.flops
    assert est.peak_memory_gb == pytest.approx(max(est.memory_bytes(s) for s in est.stages) / GIB)

    table = est.table()
    assert list(table.index) == ["small", "large", "prediction", "total"]
    assert table.loc["large", "input"] == "16x8" and table.loc["large", "batch"] == 2
    assert table.loc["total", "images trained"] == 1000 + 1020
    assert table.loc["total", "GPU hours"] == round(est.gpu_hours, 2)
    text = str(est)
    assert "slow" in text and "21 trainable parameters" in text and "fits" in text


def test_as_dict_is_json_and_holds_the_totals() -> None:
    est = estimate_cost(hand_net(), [stage()], gpu=SLOW, in_channels=1, predicted_images=3)
    data = json.loads(json.dumps(est.as_dict()))
    assert data["gpu"] == {
        "name": "slow",
        "memory_gb": 1.0,
        "fp32_tflops": 1e-9,
        "fp16_tflops": 4e-9,
    }
    assert data["parameters"] == PARAMS and data["optimizer"] == "adam"
    assert [s["name"] for s in data["stages"]] == ["s", "prediction"]
    first = data["stages"][0]
    assert first["input"] == [8, 8] and first["images_trained"] == 1000
    assert first["gflop_train"] == pytest.approx(TRAIN / 1e9)
    assert data["stages"][1]["activations_gb"] is None
    total = data["total"]
    assert total["gpu_hours"] == pytest.approx(est.gpu_hours)
    assert total["peak_memory_gb"] == pytest.approx(est.peak_memory_gb)
    assert total["fits"] is True and total["images_evaluated"] == 3


def test_named_gpus_and_defaults() -> None:
    assert (A100_40GB.memory_gb, A100_40GB.fp32_tflops, A100_40GB.fp16_tflops) == (39.39, 19.5, 312)
    assert RTX_4090.peak_flops(True) == pytest.approx(165.2e12)
    assert RTX_4090.peak_flops(False) == pytest.approx(82.6e12)
    assert OPTIMIZER_STATES == {"adam": 2, "sgd_momentum": 1, "sgd": 0}
    est = estimate_cost(hand_net(), [stage()], in_channels=1)
    assert isinstance(est, CostEstimate) and est.gpu is A100_40GB
    assert est.sustained_flops == pytest.approx(0.3 * 312e12)


def test_bad_arguments_say_what_is_valid() -> None:
    with pytest.raises(ValueError, match="adam, sgd_momentum, sgd"):
        estimate_cost(hand_net(), [stage()], optimizer="rmsprop", in_channels=1)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        estimate_cost(hand_net(), [stage()], efficiency=1.5, in_channels=1)
    with pytest.raises(ValueError, match="at least one Stage"):
        estimate_cost(hand_net(), [], in_channels=1)
    with pytest.raises(ValueError, match="batch_size"):
        stage(batch_size=0)
    with pytest.raises(ValueError, match="models"):
        stage(models=0)
    assert math.isclose(stage(epochs=0).images_trained, 0)


def test_a_gpu_is_known_by_the_name_torch_gives_it() -> None:
    """``gpu_named`` (the GPU check's estimate): the model in ``torch.cuda.get_device_name``,
    the PCIe H100 apart from the SXM one, the device's own memory, and None for a stranger."""
    from lessons_lib.cost import H100_PCIE, H100_SXM, H200, T4, gpu_named

    assert gpu_named("NVIDIA H100 80GB HBM3") == H100_SXM
    assert gpu_named("NVIDIA H100 PCIe") == H100_PCIE
    assert gpu_named("NVIDIA H200") == H200 and gpu_named("Tesla T4") == T4
    a100 = gpu_named("NVIDIA A100-SXM4-80GB", memory_gb=79.2)
    assert a100.memory_gb == 79.2 and a100.fp16_tflops == 312.0  # the 40GB's compute
    assert gpu_named("NVIDIA L4") is None
