"""Distillation losses: the paper's multi-level objective (more modules join later)."""

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
    "create_multilevel_loss",
    "needs_attention",
]
