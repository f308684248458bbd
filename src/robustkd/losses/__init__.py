"""Distillation losses: the paper's multi-level objective and Contrastive Inversion."""

from robustkd.losses.contrastive_inversion import contrastive_inversion_loss
from robustkd.losses.multilevel import (
    LOSS_VARIANTS,
    MultiLevelLoss,
    attention_kl,
    available_variants,
    create_multilevel_loss,
    needs_attention,
)

__all__ = [
    "LOSS_VARIANTS",
    "MultiLevelLoss",
    "attention_kl",
    "available_variants",
    "contrastive_inversion_loss",
    "create_multilevel_loss",
    "needs_attention",
]
