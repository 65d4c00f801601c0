"""lessons_lib.models.complexity.measure_throughput: timed inference, warm-up excluded."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from lessons_lib.models.complexity import measure_throughput


class Sleepy(nn.Module):
    """A module whose forward pass takes a known time and counts its calls."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.seconds, self.calls, self.modes, self.grad = seconds, 0, [], []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.modes.append(self.training)
        self.grad.append(torch.is_grad_enabled())
        time.sleep(self.seconds)
        return self.conv(x)


def test_times_only_the_timed_passes() -> None:
    model = Sleepy(0.02)
    out = measure_throughput(model, (3, 8, 8), batch_size=4, iters=3, warmup=2)
    assert model.calls == 5  # 2 warm-up + 3 timed
    assert 0.02 <= out["seconds_per_batch"] < 0.2
    assert out["images_per_s"] == pytest.approx(4 / out["seconds_per_batch"])
    assert (out["batch_size"], out["iters"], out["warmup"]) == (4, 3, 2)


def test_runs_in_eval_mode_without_gradients_and_restores_the_model() -> None:
    model = Sleepy(0.0).train()
    out = measure_throughput(model, (3, 8, 8), batch_size=2, iters=2, warmup=1, device="cpu")
    assert out["device"] == "cpu"
    assert model.modes == [False] * 3 and model.grad == [False] * 3
    assert model.training  # training mode restored
    assert model.conv.weight.device.type == "cpu"
    model.eval()
    measure_throughput(model, (3, 8, 8), batch_size=1, iters=1, warmup=0, device="cpu")
    assert not model.training


def test_default_device_is_the_gpu_if_any() -> None:
    out = measure_throughput(nn.Conv2d(3, 1, 1), (3, 4, 4), batch_size=1, iters=1, warmup=0)
    assert out["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"iters": 0}, {"warmup": -1}], ids=["batch", "iters", "warmup"]
)
def test_bad_counts_raise(kwargs: dict) -> None:
    args = {"batch_size": 1, "iters": 1, "warmup": 0, **kwargs}
    with pytest.raises(ValueError, match="measure_throughput"):
        measure_throughput(nn.Conv2d(3, 1, 1), (3, 4, 4), **args)
