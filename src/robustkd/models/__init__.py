"""Backbones (timm teachers and students) and the taps the distillation losses read."""

from robustkd.models.backbones import (
    HUB,
    backbone_input_config,
    copy_student,
    create_backbone,
    freeze,
    model_input_config,
)
from robustkd.models.taps import ViTOutputs, cls_patch_attention_logits, vit_forward

__all__ = [
    "HUB",
    "ViTOutputs",
    "backbone_input_config",
    "cls_patch_attention_logits",
    "copy_student",
    "create_backbone",
    "freeze",
    "model_input_config",
    "vit_forward",
]
