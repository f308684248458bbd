"""Teacher-student pretraining steps on distorted images, without labels.

- :class:`DistillTask`: asymmetric multi-level distillation (the main paper, section 3). A
  frozen teacher sees the clean crop; the student, initialised from the same weights, sees the
  distorted version of the *same* crop. The loss aligns CLS tokens, patch tokens and the last
  block's per-head CLS->patch attention (:mod:`robustkd.losses.multilevel`).
- :class:`ContrastiveInversionTask`: the Contrastive Inversion baseline (same views, a CLIP
  encoder, :mod:`robustkd.losses.contrastive_inversion`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from robustkd.distortions import Distortion
from robustkd.engine.distributed import all_gather_no_grad, context
from robustkd.losses.contrastive_inversion import contrastive_inversion_loss
from robustkd.losses.multilevel import MultiLevelLoss, create_multilevel_loss, needs_attention
from robustkd.models.taps import attach_attention_tap, vit_forward

__all__ = ["ContrastiveInversionTask", "DistillTask", "Normalize", "distill_task"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on any device; pixels in [0, 1] in."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """Store the statistics as buffers (they follow the module's device).

        Args:
            mean: Per-channel mean.
            std: Per-channel standard deviation.
        """
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, C, H, W) batch."""
        return (x - self.mean) / self.std


class DistillTask:
    """One distillation step: teacher on clean, student on distorted, multi-level loss."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        loss: MultiLevelLoss,
        distortion: Distortion,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        *,
        with_attention: bool,
    ) -> None:
        """Assemble the step.

        Args:
            teacher: Frozen ViT (eval mode, no gradients).
            student: Trainable ViT with the teacher's initial weights.
            loss: The multi-level loss (its lambdas select the ablation variant).
            distortion: The student's input corruption.
            normalize: Pixel normalisation of the backbone.
            with_attention: Compute attention logits (only when lambda_a > 0).
        """
        self.teacher, self.model = teacher, student
        self.loss_fn, self.distortion, self.normalize = loss, distortion, normalize
        self.with_attention = with_attention
        if with_attention:  # the hooks, registered once here (not at each step)
            attach_attention_tap(teacher)
            attach_attention_tap(student)

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Return the loss components of a batch of clean crops (B, 3, S, S) in [0, 1]."""
        del labels  # distillation is label-free
        self.teacher.to(images.device)
        distorted = self.distortion(images, generator)  # (B, 3, S, S), same crop
        attn = self.with_attention
        with torch.no_grad():
            t = vit_forward(self.teacher, self.normalize(images), with_attention=attn)
        s = vit_forward(self.model, self.normalize(distorted), with_attention=attn)
        return self.loss_fn(s, t)


class ContrastiveInversionTask:
    """One Contrastive Inversion step: frozen encoder on clean, student on distorted crops."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        distortion: Distortion,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        *,
        tau: float,
    ) -> None:
        """Assemble the step.

        Args:
            teacher: Frozen image encoder returning (B, D) embeddings (CLIP RN101's
                attention-pool output at paper scale).
            student: Trainable copy of it.
            distortion: The student's input corruption.
            normalize: Pixel normalisation of the encoder.
            tau: Temperature of the similarity softmax.
        """
        self.teacher, self.model = teacher, student
        self.distortion, self.normalize, self.tau = distortion, normalize, tau

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Return the loss components of a batch of clean crops (B, 3, S, S) in [0, 1]."""
        del labels
        self.teacher.to(images.device)
        distorted = self.distortion(images, generator)
        with torch.no_grad():
            t = self.teacher(self.normalize(images))  # (B, D)
        s = self.model(self.normalize(distorted))  # (B, D)
        # Data-parallel: the softmax runs over the teacher embeddings of the global batch.
        ctx = context()
        t_all = all_gather_no_grad(t)  # (world * B, D)
        return contrastive_inversion_loss(s, t_all, self.tau, offset=ctx.rank * len(s))


def distill_task(
    method: str,
    teacher: nn.Module,
    student: nn.Module,
    dist: Distortion,
    normalize: Normalize,
    loss_weights: Mapping[str, Any],
) -> DistillTask | ContrastiveInversionTask:
    """The training step of a distillation method.

    Args:
        method: ``ci`` (Contrastive Inversion), or a multi-level method (``ours``, ``global``,
            ``global-local``, ``global-attention``).
        teacher: The frozen teacher.
        student: The student (trained).
        dist: The distortion of the student's inputs.
        normalize: Pixel normalisation of the backbone.
        loss_weights: ``tau`` (CI), or the multi-level loss's weights and ``tau``.

    Raises:
        ConfigError: An unknown method or a missing loss weight
            (:func:`~robustkd.losses.multilevel.create_multilevel_loss`).
    """
    if method == "ci":
        return ContrastiveInversionTask(
            teacher, student, dist, normalize, tau=float(loss_weights["tau"])
        )
    return DistillTask(
        teacher,
        student,
        create_multilevel_loss(method, loss_weights),
        dist,
        normalize,
        with_attention=needs_attention(method),
    )
