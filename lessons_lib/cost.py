"""What a full training run costs on an assumed GPU: hours and memory, computed, not timed.

A chapter's full profile trains on a GPU that the course's CI does not have, so its expected
cost is computed from the network and the profile (:func:`estimate_cost`):

* **time**: FLOPs of one training image (forward and backward, counted by
  :func:`~lessons_lib.models.complexity.count_flops` at the stage's input size) x the images
  trained (images per epoch x epochs x models), plus one forward pass per image evaluated,
  divided by a stated fraction (``efficiency``) of the :class:`GPU`'s peak FLOP/s: fp16 tensor
  cores with mixed precision (what :func:`lessons_lib.training.make_learner` uses on a GPU),
  fp32 otherwise;
* **memory**: fp32 weights, gradients and optimiser state (Adam keeps 2 values per parameter,
  SGD with momentum 1), autocast's fp16 copies of the weights under mixed precision, and the
  activations saved for the backward pass at the stage's batch size
  (:func:`~lessons_lib.models.complexity.saved_activation_bytes`, measured on PyTorch's ``meta``
  device, fp16 under mixed precision), compared with the GPU's memory.

Left out, so the estimate is a lower bound on time and memory: element-wise work (batch norm,
activations, the loss, the optimiser step: FLOPs that matter less than their memory traffic),
data loading, the CUDA context and cuDNN workspaces (a few hundred MB), the gradients of the
activations alive during the backward pass and the allocator's fragmentation. A stage with a
frozen encoder is counted as a full training step (an upper bound). A run on a GPU records what
it really took beside the estimate: ``wall_time_s``, ``timings_s`` and ``gpu_peak_memory_gb``
in ``metrics.json`` (:meth:`CostEstimate.as_dict` goes into its ``details``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from lessons_lib.models.complexity import count_flops, count_parameters, saved_activation_bytes

__all__ = [
    "A100_40GB",
    "DEFAULT_EFFICIENCY",
    "GPU",
    "OPTIMIZER_STATES",
    "RTX_4090",
    "T4",
    "CostEstimate",
    "Stage",
    "StageCost",
    "estimate_cost",
]

GIB = 2**30

DEFAULT_EFFICIENCY = 0.3
"""Assumed share of the GPU's peak FLOP/s that training sustains (convolutional networks with
batch norm typically reach 20-50 %; small layers less)."""

OPTIMIZER_STATES = {"adam": 2, "sgd_momentum": 1, "sgd": 0}
"""fp32 values an optimiser keeps per trainable parameter (Adam: both moment averages; SGD with
momentum: the velocity; plain SGD: none)."""


@dataclass(frozen=True)
class GPU:
    """An assumed GPU: its memory and peak throughput (dense arithmetic, vendor datasheet).

    Args:
        name: Product name.
        memory_gb: Memory in GiB (``2**30`` bytes, as ``torch.cuda`` reports it).
        fp32_tflops: Peak fp32 TFLOP/s (no tensor cores).
        fp16_tflops: Peak fp16/bf16 tensor-core TFLOP/s with fp32 accumulation, dense (the
            datasheets' larger "with sparsity" figure is twice this).
    """

    name: str
    memory_gb: float
    fp32_tflops: float
    fp16_tflops: float

    def peak_flops(self, mixed_precision: bool) -> float:
        """Peak FLOP/s: tensor-core fp16 with mixed precision, else fp32."""
        return (self.fp16_tflops if mixed_precision else self.fp32_tflops) * 1e12


# NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS, FP16 Tensor Core 312 TFLOPS (624 with
# sparsity), 40 GB HBM2 (torch.cuda reports 39.39 to 39.59 GiB with the driver: the least here).
A100_40GB = GPU("NVIDIA A100 40GB", memory_gb=39.39, fp32_tflops=19.5, fp16_tflops=312.0)
# NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090: peak FP32 82.6 TFLOPS, peak
# FP16 Tensor TFLOPS with FP32 accumulate 165.2 (330.4 with sparsity), 24 GB GDDR6X (torch.cuda
# reports 23.61 to 23.68 GiB with the driver: the least here).
RTX_4090 = GPU("NVIDIA GeForce RTX 4090", memory_gb=23.61, fp32_tflops=82.6, fp16_tflops=165.2)
# NVIDIA T4 Tensor Core GPU datasheet: single precision 8.1 TFLOPS, mixed precision (FP16/FP32)
# 65 TFLOPS, 16 GB GDDR6 (torch.cuda reports 14.56 to 14.75 GiB with the driver: the least here).
T4 = GPU("NVIDIA T4", memory_gb=14.56, fp32_tflops=8.1, fp16_tflops=65.0)
"""Colab's free-tier GPU: the card the ``colab`` profile is sized for."""
# NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: FP32 67 TFLOPS, FP16 Tensor Core 1,979 TFLOPS
# with sparsity (989.5 dense), 80 GB HBM3 (79.1 GiB as torch.cuda reports it).
H100_SXM = GPU("NVIDIA H100 80GB HBM3", memory_gb=79.1, fp32_tflops=67.0, fp16_tflops=989.5)
# The same datasheet, H100 PCIe: FP32 51 TFLOPS, FP16 Tensor Core 1,513 with sparsity (756.5).
H100_PCIE = GPU("NVIDIA H100 PCIe", memory_gb=79.1, fp32_tflops=51.0, fp16_tflops=756.5)
# NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: the H100 SXM's compute (FP32 67, FP16 Tensor
# Core 1,979 with sparsity) with 141 GB HBM3e (about 139.8 GiB as torch.cuda reports it).
H200 = GPU("NVIDIA H200", memory_gb=139.8, fp32_tflops=67.0, fp16_tflops=989.5)

KNOWN_GPUS = (
    ("H200", H200),
    ("H100 PCIE", H100_PCIE),  # before "H100": the SXM card's name has no form factor
    ("H100", H100_SXM),
    ("A100", A100_40GB),
    ("RTX 4090", RTX_4090),
    ("T4", T4),
)
"""The GPUs whose datasheet figures the course knows, each with the model token its
``torch.cuda.get_device_name`` contains, in the order :func:`gpu_named` tries them."""


def gpu_named(name: str, memory_gb: float | None = None) -> GPU | None:
    """The known GPU whose product name ``torch.cuda.get_device_name`` gives (``"NVIDIA H100
    80GB HBM3"``, ``"Tesla T4"``, ...), matched by model; ``None`` for another card.

    Args:
        name: The device name.
        memory_gb: The device's memory as ``torch.cuda`` reports it, if known (it replaces
            the datasheet's, e.g. an A100 80GB has the 40GB's compute).
    """
    text = name.upper()
    for token, gpu in KNOWN_GPUS:
        if token in text:
            if memory_gb is None:
                return gpu
            return GPU(name, memory_gb, gpu.fp32_tflops, gpu.fp16_tflops)
    return None


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a square side or a ``(height, width)`` pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


@dataclass(frozen=True)
class Stage:
    """One way a profile trains: an input size, a batch size and how many images, epochs, models.

    Args:
        name: Label of the stage (a row of the table), e.g. ``"512 px"`` or ``"5 folds"``.
        size: Network input: a square side or ``(height, width)``.
        batch_size: Images per training step.
        epochs: Epochs (the most a run may take when it stops early).
        images: Training images per epoch. fastai drops an incomplete last batch, so
            ``images // batch_size * batch_size`` are trained.
        models: Models trained this way (folds, variants).
        eval_images: Images predicted (forward only) after every epoch of each model: the
            validation set that watches training.

    Raises:
        ValueError: a size, count or batch size out of range.
    """

    name: str
    size: int | tuple[int, int]
    batch_size: int
    epochs: int
    images: int
    models: int = 1
    eval_images: int = 0

    def __post_init__(self) -> None:
        height, width = _hw(self.size)
        checks = {
            "size": min(height, width) >= 1,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 0,
            "images": self.images >= 0,
            "models": self.models >= 1,
            "eval_images": self.eval_images >= 0,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(
                f"stage {self.name!r}: {', '.join(wrong)} out of range (size and batch_size >= 1,"
                f" models >= 1, epochs and image counts >= 0), got {self}"
            )

    @property
    def images_trained(self) -> int:
        """Training images over all epochs and models (full batches only)."""
        return self.images // self.batch_size * self.batch_size * self.epochs * self.models

    @property
    def images_evaluated(self) -> int:
        """Images predicted after the epochs, over all models."""
        return self.eval_images * self.epochs * self.models


@dataclass(frozen=True)
class StageCost:
    """The counted cost of one stage (or of the final prediction, ``batch_size`` ``None``).

    Args:
        name: The stage's name.
        size: ``(height, width)`` of the input.
        batch_size: Images per training step; ``None`` for forward passes only.
        images_per_epoch: Training images per epoch as given.
        epochs: Epochs.
        models: Models.
        images_trained: Images of the training steps.
        images_evaluated: Images of the forward passes only.
        flops_forward: FLOPs of one image's forward pass.
        flops_train: FLOPs of one image's training step (forward and backward).
        activation_bytes: Activations saved for backward at ``batch_size`` (``None``: none).
    """

    name: str
    size: tuple[int, int]
    batch_size: int | None
    images_per_epoch: int
    epochs: int
    models: int
    images_trained: int
    images_evaluated: int
    flops_forward: int
    flops_train: int
    activation_bytes: int | None

    @property
    def flops(self) -> float:
        """FLOPs of the whole stage."""
        return float(self.images_trained * self.flops_train) + float(
            self.images_evaluated * self.flops_forward
        )


@dataclass(frozen=True)
class CostEstimate:
    """The expected cost of a training run on an assumed GPU (from :func:`estimate_cost`).

    Args:
        gpu: The assumed GPU.
        efficiency: Share of its peak FLOP/s assumed sustained.
        mixed_precision: fp16 tensor cores and fp16 activations (else fp32).
        optimizer: A key of :data:`OPTIMIZER_STATES`.
        parameters: Trainable parameters.
        weight_bytes: Bytes of every parameter and buffer as stored (fp32).
        stages: One :class:`StageCost` per stage, then the final prediction if any.
    """

    gpu: GPU
    efficiency: float
    mixed_precision: bool
    optimizer: str
    parameters: int
    weight_bytes: int
    stages: tuple[StageCost, ...]

    @property
    def sustained_flops(self) -> float:
        """FLOP/s assumed: ``efficiency`` x the GPU's peak at this precision."""
        return self.efficiency * self.gpu.peak_flops(self.mixed_precision)

    @property
    def flops(self) -> float:
        """FLOPs of the whole run."""
        return sum(s.flops for s in self.stages)

    @property
    def gpu_hours(self) -> float:
        """Hours of GPU time for the whole run at the assumed efficiency."""
        return self.flops / self.sustained_flops / 3600

    def state_bytes(self) -> dict[str, int]:
        """Memory of everything but the activations, by part (bytes).

        Returns:
            ``weights`` (fp32, with buffers), ``fp16 weight copies`` (mixed precision only),
            ``gradients`` (fp32, trainable parameters) and ``optimiser`` (fp32 state).
        """
        parts = {"weights": self.weight_bytes}
        if self.mixed_precision:
            parts["fp16 weight copies"] = 2 * self.parameters
        parts["gradients"] = 4 * self.parameters
        parts["optimiser"] = 4 * OPTIMIZER_STATES[self.optimizer] * self.parameters
        return parts

    def memory_bytes(self, stage: StageCost) -> int:
        """Peak memory of a training stage: state plus saved activations (weights only when the
        stage makes forward passes alone)."""
        if stage.activation_bytes is None:
            return self.weight_bytes
        return sum(self.state_bytes().values()) + stage.activation_bytes

    @property
    def peak_memory_gb(self) -> float:
        """The largest stage's memory, GiB."""
        return max(self.memory_bytes(s) for s in self.stages) / GIB

    @property
    def fits(self) -> bool:
        """Whether the peak memory fits the GPU's memory."""
        return self.peak_memory_gb <= self.gpu.memory_gb

    def table(self) -> pd.DataFrame:
        """One row per stage and a total: inputs, images, FLOPs, GPU hours and memory."""
        rows = {}
        for s in self.stages:
            rows[s.name] = {
                "input": f"{s.size[0]}x{s.size[1]}",
                "batch": s.batch_size if s.batch_size is not None else "",
                "images/epoch": s.images_per_epoch,
                "epochs": s.epochs,
                "models": s.models,
                "images trained": s.images_trained,
                "images evaluated": s.images_evaluated,
                "GFLOP/image forward": round(s.flops_forward / 1e9, 1),
                "GFLOP/image train": "" if s.batch_size is None else round(s.flops_train / 1e9, 1),
                "PFLOP": round(s.flops / 1e15, 2),
                "GPU hours": round(s.flops / self.sustained_flops / 3600, 2),
                "activations GiB": ""
                if s.activation_bytes is None
                else round(s.activation_bytes / GIB, 2),
                "memory GiB": round(self.memory_bytes(s) / GIB, 2),
            }
        rows["total"] = {
            "input": "",
            "batch": "",
            "images/epoch": "",
            "epochs": "",
            "models": "",
            "images trained": sum(s.images_trained for s in self.stages),
            "images evaluated": sum(s.images_evaluated for s in self.stages),
            "GFLOP/image forward": "",
            "GFLOP/image train": "",
            "PFLOP": round(self.flops / 1e15, 2),
            "GPU hours": round(self.gpu_hours, 2),
            "activations GiB": "",
            "memory GiB": round(self.peak_memory_gb, 2),
        }
        return pd.DataFrame.from_dict(rows, orient="index")

    def summary(self) -> str:
        """The assumptions and the totals, in words."""
        gpu = self.gpu
        precision = "fp16 tensor-core" if self.mixed_precision else "fp32"
        state = self.state_bytes()
        parts = " + ".join(f"{name} {b / GIB:.2f}" for name, b in state.items())
        verdict = "fits" if self.fits else "does NOT fit"
        states = OPTIMIZER_STATES[self.optimizer]
        return "\n".join(
            [
                f"assumed GPU: {gpu.name}, {gpu.memory_gb:g} GiB, peak {gpu.fp16_tflops:g} "
                f"TFLOP/s fp16 tensor cores, {gpu.fp32_tflops:g} TFLOP/s fp32",
                f"assumed sustained: {self.efficiency:.0%} of the {precision} peak = "
                f"{self.sustained_flops / 1e12:.1f} TFLOP/s",
                f"network: {self.parameters:,} trainable parameters; {self.optimizer} keeps "
                f"{states} fp32 value{'s' if states != 1 else ''} per parameter",
                f"memory: {parts} = {sum(state.values()) / GIB:.2f} GiB,",
                f"  plus the saved activations: peak {self.peak_memory_gb:.2f} GiB of "
                f"{gpu.memory_gb:g} GiB, {verdict}",
                f"time: {self.flops / 1e15:.2f} PFLOP, about {self.gpu_hours:.2f} GPU hours "
                f"({self.gpu_hours * 60:.0f} min)",
            ]
        )

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table().to_string()

    def as_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data, for ``run.finish(..., cost_estimate=...)``.

        Returns:
            ``gpu`` (name, memory_gb, fp32_tflops, fp16_tflops), ``efficiency``,
            ``mixed_precision``, ``optimizer``, ``parameters``, ``state_gb``, ``stages`` (one
            dict per row: ``name, input [h, w], batch_size, images_per_epoch, epochs, models,
            images_trained, images_evaluated, gflop_forward, gflop_train, pflop, gpu_hours,
            activations_gb, memory_gb``) and ``total`` (``images_trained, images_evaluated,
            pflop, gpu_hours, peak_memory_gb, fits``).
        """
        stages = []
        for s in self.stages:
            stages.append(
                {
                    "name": s.name,
                    "input": list(s.size),
                    "batch_size": s.batch_size,
                    "images_per_epoch": s.images_per_epoch,
                    "epochs": s.epochs,
                    "models": s.models,
                    "images_trained": s.images_trained,
                    "images_evaluated": s.images_evaluated,
                    "gflop_forward": s.flops_forward / 1e9,
                    "gflop_train": s.flops_train / 1e9,
                    "pflop": s.flops / 1e15,
                    "gpu_hours": s.flops / self.sustained_flops / 3600,
                    "activations_gb": None
                    if s.activation_bytes is None
                    else s.activation_bytes / GIB,
                    "memory_gb": self.memory_bytes(s) / GIB,
                }
            )
        return {
            "gpu": {
                "name": self.gpu.name,
                "memory_gb": self.gpu.memory_gb,
                "fp32_tflops": self.gpu.fp32_tflops,
                "fp16_tflops": self.gpu.fp16_tflops,
            },
            "efficiency": self.efficiency,
            "mixed_precision": self.mixed_precision,
            "optimizer": self.optimizer,
            "parameters": self.parameters,
            "state_gb": sum(self.state_bytes().values()) / GIB,
            "stages": stages,
            "total": {
                "images_trained": sum(s.images_trained for s in self.stages),
                "images_evaluated": sum(s.images_evaluated for s in self.stages),
                "pflop": self.flops / 1e15,
                "gpu_hours": self.gpu_hours,
                "peak_memory_gb": self.peak_memory_gb,
                "fits": self.fits,
            },
        }


def estimate_cost(
    model: nn.Module,
    stages: Sequence[Stage],
    gpu: GPU = A100_40GB,
    efficiency: float = DEFAULT_EFFICIENCY,
    mixed_precision: bool = True,
    optimizer: Any = "adam",
    in_channels: int = 3,
    predicted_images: int = 0,
) -> CostEstimate:
    """The expected cost of training ``model`` through ``stages`` on ``gpu``.

    Everything is counted on a copy of ``model`` on PyTorch's ``meta`` device: nothing is
    computed, so a paper's input size costs a second or two on a CPU (build the model under
    ``with torch.device("meta"):`` to skip initialising its weights too).

    Args:
        model: The network, as the run trains it (its trainable parameters are the ones with
            gradients and optimiser state).
        stages: How the run trains, in order.
        gpu: The assumed GPU.
        efficiency: Share of the GPU's peak FLOP/s assumed sustained, in (0, 1].
        mixed_precision: fp16 tensor cores and fp16 activations (``make_learner``'s default on
            a GPU); ``False``: fp32.
        optimizer: The recipe's optimiser (an :class:`~lessons_lib.training.optim.AdamSpec` or
            :class:`~lessons_lib.training.optim.SGDSpec`: its ``state_values`` per parameter
            are counted), or a key of :data:`OPTIMIZER_STATES` (``"adam"``,
            ``"sgd_momentum"``, ``"sgd"``).
        in_channels: Input channels of the network.
        predicted_images: Images predicted once after training (validation and test sets, over
            all models), forward only at the last stage's input size.

    Returns:
        A :class:`CostEstimate`: ``print`` it, show its :meth:`~CostEstimate.table`, record
        its :meth:`~CostEstimate.as_dict`.

    Raises:
        ValueError: no stage, an unknown optimiser, or ``efficiency`` outside (0, 1].
    """
    if not stages:
        raise ValueError("estimate_cost needs at least one Stage")
    if not isinstance(optimizer, str):  # a recipe's optimiser: its name and state per parameter
        states = optimizer.state_values
        optimizer = {2: "adam", 1: "sgd_momentum", 0: "sgd"}[states]
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZER_STATES)}")
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency is a share of the peak, in (0, 1], got {efficiency}")
    if predicted_images < 0:
        raise ValueError(f"predicted_images must be >= 0, got {predicted_images}")
    meta = copy.deepcopy(model).to_empty(device="meta")  # keeps which parameters are trainable
    weight_bytes = sum(t.numel() * t.element_size() for t in (*meta.parameters(), *meta.buffers()))
    flops: dict[tuple[int, int], tuple[int, int]] = {}

    def per_image(size: tuple[int, int]) -> tuple[int, int]:
        # a batch of 2: training-mode batch norm after a global pooling needs 2 images
        if size not in flops:
            shape = (2, in_channels, *size)
            flops[size] = (count_flops(meta, shape) // 2, count_flops(meta, shape, True) // 2)
        return flops[size]

    saved: dict[tuple[int, int, int], int] = {}
    costs = []
    for stage in stages:
        size = _hw(stage.size)
        forward, train = per_image(size)
        shape = (stage.batch_size, in_channels, *size)
        if shape not in saved:
            saved[shape] = saved_activation_bytes(meta, shape, mixed_precision)
        activations = saved[shape]
        costs.append(
            StageCost(
                stage.name,
                size,
                stage.batch_size,
                stage.images,
                stage.epochs,
                stage.models,
                stage.images_trained,
                stage.images_evaluated,
                forward,
                train,
                activations,
            )
        )
    if predicted_images:
        size = costs[-1].size
        forward, train = per_image(size)
        costs.append(
            StageCost(
                "prediction",
                size,
                None,
                predicted_images,
                1,
                1,
                0,
                predicted_images,
                forward,
                train,
                None,
            )
        )
    return CostEstimate(
        gpu=gpu,
        efficiency=efficiency,
        mixed_precision=mixed_precision,
        optimizer=optimizer,
        parameters=count_parameters(meta),
        weight_bytes=int(weight_bytes),
        stages=tuple(costs),
    )
