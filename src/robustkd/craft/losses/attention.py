"""Attention transfer (Zagoruyko & Komodakis; L_feat of the CRAFT paper's section 3.2).

``a = normalize(flatten(mean_c f^2))`` per layer; the loss is the squared L2 distance of the
student's and teacher's maps, averaged over layers and images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention_map", "attention_transfer_loss"]


def attention_map(feature: Tensor) -> Tensor:
    """Attention map of a feature map: ``normalize(flatten(mean_c(f^2)))``, shape (B, H*W)."""
    return F.normalize(feature.pow(2).mean(dim=1).flatten(1), dim=1)  # (B, H*W)


def attention_transfer_loss(
    student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], reduction: str = "mean"
) -> Tensor:
    """Attention transfer: ``1/|L| sum_l ||A_T^l - A_S^l||_2^2``, averaged over images.

    Args:
        student_features: Student feature maps (B, C_s, H_l, W_l), one per layer.
        teacher_features: Teacher feature maps (B, C_t, H_l, W_l) of the same layers (the
            channel counts may differ; the spatial sizes must match).
        reduction: ``mean`` over images, or ``none`` (per image).

    Returns:
        A scalar or (B,) per-image losses.
    """
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError("attention transfer needs the same, non-empty list of layers")
    per = []
    for fs, ft in zip(student_features, teacher_features, strict=True):
        if fs.shape[-2:] != ft.shape[-2:]:
            raise ValueError(f"attention maps differ in size: {fs.shape} vs {ft.shape}")
        diff = attention_map(fs) - attention_map(ft.detach())  # (B, H*W)
        per.append(diff.pow(2).sum(1))  # (B,)
    loss = torch.stack(per).mean(0)  # (B,)
    return loss.mean() if reduction == "mean" else loss
