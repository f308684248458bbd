"""Backbones (timm teachers and students) and the taps the distillation losses read.

The names are loaded on first use (PEP 562 ``__getattr__``): importing a submodule that needs
no timm (:mod:`robustkd.models.taps`, what the losses import) does not import timm and
torchvision (seconds per job, e.g. in the CRAFT jobs, which train no timm model).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name's submodule.
_SUBMODULE = {
    "HUB": "backbones",
    "backbone_input_config": "backbones",
    "copy_student": "backbones",
    "create_backbone": "backbones",
    "freeze": "backbones",
    "model_input_config": "backbones",
    "ViTOutputs": "taps",
    "cls_patch_attention_logits": "taps",
    "vit_forward": "taps",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` (once) and return it."""
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the ones not loaded yet included."""
    return sorted([*globals(), *__all__])
