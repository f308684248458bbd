"""The CRAFT study's baseline methods: ERM, LogitKD and AttentionKD (section 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustkd.craft.losses.attention import attention_transfer_loss
from robustkd.craft.losses.logit_kd import kd_loss
from robustkd.craft.tasks.base import StudentTask, layer_indices, register_task

__all__ = ["AttentionKDTask", "ErmTask", "LogitKDTask"]


@register_task("erm")
class ErmTask(StudentTask):
    """ERM: cross-entropy on clean training images."""

    needs_teacher = False
    teacher_views = 0

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce"}``."""
        del generator
        ce = F.cross_entropy(self.student(self.normalize(images)), targets[:, 0])
        return {"loss": ce, "ce": ce}


@register_task("logitkd")
class LogitKDTask(StudentTask):
    """LogitKD: ``L_ERM + lambda_KD L_KD`` (section 3.2)."""

    config_keys = ("lambda_kd", "temperature")

    def __init__(self, *args: Any, lambda_kd: float, temperature: float, **kw: Any) -> None:
        """Set ``lambda_kd`` and the KD temperature; other arguments as :class:`StudentTask`."""
        super().__init__(*args, **kw)
        self.lambda_kd, self.temperature = lambda_kd, temperature

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "kd"}``."""
        del generator
        t = self._teacher(images)
        logits = self.student(self.normalize(images))  # (B, K)
        ce = F.cross_entropy(logits, targets[:, 0])
        kd = kd_loss(logits, t.logits, self.temperature)
        return {"loss": ce + self.lambda_kd * kd, "ce": ce, "kd": kd}


@register_task("attentionkd")
class AttentionKDTask(StudentTask):
    """AttentionKD: ``L_ERM + lambda_feat L_feat`` on the configured layers (section 3.2)."""

    config_keys = ("lambda_feat", "layers")

    def __init__(self, *args: Any, lambda_feat: float, layers: Sequence[str], **kw: Any) -> None:
        """Set ``lambda_feat`` and the layers; other arguments as :class:`StudentTask`."""
        super().__init__(*args, **kw)
        self.lambda_feat = lambda_feat
        self.layers = layer_indices(layers, self.student)

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "at"}``."""
        del generator
        t = self._teacher(images)
        s = self.student.forward_features(self.normalize(images))
        ce = F.cross_entropy(s.logits, targets[:, 0])
        at = attention_transfer_loss(
            [s.stages[i] for i in self.layers], [t.stages[i] for i in self.layers]
        )
        return {"loss": ce + self.lambda_feat * at, "ce": ce, "at": at}
