"""The CRAFT method (section 3): clean and corrupted views, reliability-aware distillation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustkd.corruptions import CorruptionMix
from robustkd.craft.losses.craft import CraftConfig, CraftObjective, pooled_embedding
from robustkd.craft.models import CifarResNet
from robustkd.craft.tasks.base import StudentTask, layer_indices, register_task

__all__ = ["CraftTask"]


@register_task("craft")
class CraftTask(StudentTask):
    """CRAFT (section 3): clean + M corrupted views through both networks, reliability-aware.

    Each step corrupts the batch M times with :class:`CorruptionMix` (every image draws its own
    training corruption and severity from the step's generator), runs the teacher and the
    student on all ``V = M + 1`` views in one batch each, builds pooled, normalised multi-layer
    embeddings and applies :class:`CraftObjective`. When a layer's widths differ, a linear
    connector (trained with the student) maps the student's pooled feature to the teacher's
    width; with equal widths (our configurations) the cosine similarity is the paper's, unmapped.
    """

    def __init__(
        self,
        student: CifarResNet,
        teacher: CifarResNet,
        normalize: Callable[[Tensor], Tensor],
        *,
        config: CraftConfig,
        layers: Sequence[str],
        train_corruptions: Sequence[str],
        train_severities: Sequence[int],
    ) -> None:
        """Assemble CRAFT.

        Args:
            student: The student.
            teacher: The frozen teacher.
            normalize: Pixel normalisation.
            config: Hyperparameters.
            layers: Layers whose pooled features make the embedding (``stage1``...).
            train_corruptions: Corruptions of the training views.
            train_severities: Their severities.
        """
        self.layers = layer_indices(layers, student)
        connectors = nn.ModuleList(
            nn.Identity()
            if student.widths[i] == teacher.widths[i]
            else nn.Linear(student.widths[i], teacher.widths[i], bias=False)
            for i in self.layers
        )
        super().__init__(student, teacher, normalize, {"connectors": connectors})
        self.connectors, self.config = connectors, config
        self.objective = CraftObjective(config)
        self.mix = CorruptionMix(train_corruptions, train_severities)
        self.teacher_views = config.views + 1

    @classmethod
    def settings(
        cls, cfg: Mapping[str, Any], *, train_labels: Sequence[int] | Tensor
    ) -> dict[str, Any]:
        """The hyperparameters, the layers and the training corruptions and severities."""
        del train_labels
        return {
            "config": CraftConfig.from_config(cfg),
            "layers": cfg["layers"],
            "train_corruptions": cfg["train_corruptions"],
            "train_severities": cfg.get("train_severities", (1, 2, 3, 4, 5)),
        }

    def views(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """The clean batch and its M corrupted copies, (B, V, 3, H, W), clean first."""
        views = [images] + [self.mix(images, generator) for _ in range(self.config.views)]
        return torch.stack(views, dim=1)

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "kd", "con", "de", "reliability", "agree", "entropy", "fragility"}``."""
        b = images.shape[0]
        x = self.views(images, generator)  # (B, V, 3, H, W)
        v = x.shape[1]
        flat = x.flatten(0, 1)  # (B*V, 3, H, W), image-major
        t = self._teacher(flat)
        s = self.student.forward_features(self.normalize(flat))
        z_t = pooled_embedding([t.stages[i] for i in self.layers]).view(b, v, -1)  # (B, V, D)
        z_s = pooled_embedding([s.stages[i] for i in self.layers], self.connectors).view(b, v, -1)
        return self.objective(
            s.logits.view(b, v, -1), t.logits.view(b, v, -1), z_s, z_t, targets[:, 0]
        )
