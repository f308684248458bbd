"""Supervised fine-tuning on distorted images, and the demo's teacher pretraining.

Full fine-tuning is the downstream protocol of both baselines and ours; the miniature's
teacher is pretrained the same way on clean images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustkd.distortions import Distortion

__all__ = ["Classifier", "FinetuneTask"]


class Classifier(nn.Module):
    """A backbone's pooled features (``num_classes=0`` timm model) followed by a linear head."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        """Attach a fresh head.

        Args:
            backbone: Returns (B, D) features; ``backbone.num_features == D``.
            num_classes: Number of output classes.
        """
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)
        nn.init.zeros_(self.head.bias)
        nn.init.trunc_normal_(self.head.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (B, C) of normalised images (B, 3, S, S)."""
        return self.head(self.backbone(x))


class FinetuneTask:
    """One fine-tuning step: cross-entropy on (optionally distorted) images."""

    def __init__(
        self,
        model: Classifier,
        distortion: Distortion | None,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        """Assemble the step.

        Args:
            model: The classifier; every parameter is trained (full fine-tuning).
            distortion: Applied to the training crops; None trains on clean images.
            normalize: Pixel normalisation of the backbone.
            label_smoothing: Cross-entropy label smoothing.
        """
        self.model, self.distortion, self.normalize = model, distortion, normalize
        self.label_smoothing = label_smoothing

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss": cross-entropy}`` of a batch of crops (B, 3, S, S) in [0, 1]."""
        if self.distortion is not None:
            images = self.distortion(images, generator)
        logits = self.model(self.normalize(images))  # (B, C)
        return {"loss": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}
