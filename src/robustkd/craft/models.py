"""CIFAR ResNets (He et al. 2016, the 6n+2 family) for the CRAFT study's teacher and student.

The KD literature's CIFAR pairs (CRD's resnet56 -> resnet20, for instance) share the stage
widths and differ in depth, so teacher and student features of a stage live in spaces of the
same dimension: CRAFT's cosine similarity ``z_T . z_S`` (section 3.3) is then defined without a
projection, exactly as the paper writes it. A model returns its logits and, on request, the
output of each of its three stages (the taps of attention transfer, CRD and CRAFT).

    model = create_cifar_model({"depth": 20, "width": 16}, num_classes=10)
    out = model.forward_features(x)  # x: (B, 3, 32, 32) normalised
    out.logits, out.stages, out.pooled  # (B, K), [(B, 16, 32, 32), ..., (B, 64, 8, 8)], (B, 64)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CifarResNet",
    "Features",
    "create_cifar_model",
    "freeze_teacher",
    "memory_format_for",
    "stage_names",
]

# CIFAR-10 training-set channel statistics (pixels in [0, 1]).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def memory_format_for(device: torch.device) -> torch.memory_format:
    """The activation layout of a CIFAR ResNet on ``device``: channels-last on CUDA only.

    On CUDA, channels-last lets cuDNN run its NHWC kernels (the usual win under mixed
    precision). On CPU the layout is contiguous (NCHW) on purpose: with torch 2.14.1, oneDNN's
    backward pass of a channels-last 1x1 stride-2 convolution with fewer than 8 input channels
    (this network's stage-2 shortcut at width < 8) corrupts the heap on AVX2-only kernels: double
    frees, segmentation faults, hangs or silently different gradients, depending on the run
    (issue 12; reproduced here with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``).
    Contiguous convolutions are safe on every instruction set. The CPU speed claim this layout
    once carried ("channels-last 30-45 % faster on CPU") did not hold up when re-measured with
    ``benchmarks/craft_step.py --layout both`` (2 cores of an AMD EPYC with AVX-512, shared with
    other work, 2026-11-30, batch 64, 3 runs): ERM steps 1,109-1,423 img/s contiguous against
    1,240-1,816 channels-last, CRAFT steps 272-419 against 214-465; the two layouts are within
    the run-to-run spread of a loaded machine. Measure on an idle machine before relying on
    either.

    Args:
        device: Where the network runs.

    Returns:
        ``torch.channels_last`` for CUDA devices, ``torch.contiguous_format`` otherwise.
    """
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


@dataclass
class Features:
    """What a forward pass exposes.

    Attributes:
        logits: (B, K) class scores.
        stages: Output of each stage, (B, C_l, H_l, W_l), shallow to deep.
        pooled: (B, C_last) global average of the last stage (the penultimate feature).
    """

    logits: torch.Tensor
    stages: list[torch.Tensor]
    pooled: torch.Tensor


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (1x1 conv-BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output (B, C_out, H / stride, W / stride)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: a 3x3 stem, three stages of n blocks, pool, linear.

    Stage widths are ``width``, ``2 width``, ``4 width`` (16/32/64 in He et al.); stages 2 and 3
    halve the resolution.
    """

    def __init__(
        self,
        depth: int,
        width: int = 16,
        num_classes: int = 10,
        memory_format: torch.memory_format | None = None,
    ) -> None:
        """Build the network.

        Args:
            depth: 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...).
            width: Channels of the stem and first stage.
            num_classes: Output classes.
            memory_format: Layout of the activations; ``None`` (the default) chooses it from
                the input's device with :func:`memory_format_for`. Forcing
                ``torch.channels_last`` on CPU is only for benchmarks: see that function for
                the fault it avoids.

        Raises:
            ValueError: ``depth`` is not of the form 6n + 2 with n >= 1, or ``width`` < 1.
        """
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"CIFAR ResNet width must be >= 1, got {width}")
        n = (depth - 2) // 6
        self.depth, self.width = depth, width
        self.widths = (width, 2 * width, 4 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, c_in = [], width
        for i, c_out in enumerate(self.widths):
            # The first block of stages 2 and 3 halves the resolution and widens the features.
            blocks = [
                BasicBlock(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1)
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(self.widths[-1], num_classes)
        self.num_features = self.widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.memory_format = memory_format

    def forward_features(self, x: torch.Tensor) -> Features:
        """Return logits, stage outputs and the pooled feature of normalised images (B, 3, H, W)."""
        fmt = memory_format_for(x.device) if self.memory_format is None else self.memory_format
        # The convolutions follow their input's layout (weights stay contiguous; cuDNN converts
        # them when the input is channels-last).
        h = self.stem(x.contiguous(memory_format=fmt))  # (B, w, H, W)
        stages = []
        for stage in self.stages:
            h = stage(h)  # (B, C_l, H_l, W_l)
            stages.append(h)
        pooled = h.mean(dim=(2, 3))  # (B, 4w)
        return Features(self.fc(pooled), stages, pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (B, K) of normalised images (B, 3, H, W)."""
        return self.forward_features(x).logits


def stage_names(model: CifarResNet) -> list[str]:
    """Names of the stage taps, e.g. ``["stage1", "stage2", "stage3"]``."""
    return [f"stage{i + 1}" for i in range(len(model.stages))]


def create_cifar_model(spec: Mapping[str, Any], num_classes: int) -> CifarResNet:
    """Build a CIFAR ResNet from its config entry.

    Args:
        spec: ``{"depth": 6n + 2, "width": channels of stage 1}``.
        num_classes: Output classes.

    Returns:
        The randomly initialised model.

    Raises:
        ValueError: Unknown keys or invalid values (named).
    """
    unknown = sorted(set(spec) - {"depth", "width"})
    if unknown:
        raise ValueError(f"unknown CIFAR model settings {unknown} (known: ['depth', 'width'])")
    return CifarResNet(int(spec["depth"]), int(spec.get("width", 16)), num_classes)


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Put a teacher in eval mode without gradients; its BN statistics stay fixed."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
