"""Logit distillation: Hinton et al.'s KD loss (L_KD of the CRAFT paper's section 3.2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_loss"]


def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, reduction: str = "mean"
) -> Tensor:
    """Hinton's distillation loss ``T^2 KL(p_T || p_S)`` with ``p = softmax(z / T)``.

    Args:
        student_logits: (..., K) student scores.
        teacher_logits: (..., K) teacher scores (no gradient flows into them).
        temperature: T > 0.
        reduction: ``mean`` over examples, or ``none`` for one value per example.

    Returns:
        A scalar, or the per-example losses of shape (...,).
    """
    t = float(temperature)
    log_ps = F.log_softmax(student_logits / t, dim=-1)  # (..., K)
    log_pt = F.log_softmax(teacher_logits.detach() / t, dim=-1)  # (..., K)
    per = (log_pt.exp() * (log_pt - log_ps)).sum(-1) * t * t  # (...,)
    return per.mean() if reduction == "mean" else per
