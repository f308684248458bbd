"""Backbones built from config entries: teacher/student ViTs and the CLIP ResNet of CI.

A backbone is a ``timm`` model named by a config entry::

    teacher: {timm_name: vit_base_patch16_224.dino, weights: hub}
    teacher: {timm_name: vit_base_patch16_224.dino, weights: /models/dino_vitb16.pth}
    tiny:    {timm_name: vit_tiny_patch16_224, weights: null,
              kwargs: {img_size: 16, patch_size: 4, embed_dim: 96, depth: 4, num_heads: 3}}

``weights`` must be given: ``"hub"`` downloads the pretrained weights of the name's tag from
the Hugging Face hub (the workflow does it once, in rule fetch_weights, and its jobs load the
file it writes: :mod:`robustkd.models.fetch`), a path loads a local file
(``.pth``/``.bin``/``.safetensors``) with strict key checking, and an explicit ``null`` builds
a randomly initialised model (the miniature's teacher before its pretraining). A pretrained
backbone is never silently replaced by a random one.

Backbones are feature extractors: the classifier is removed (``num_classes=0``), except for
CLIP image towers (``*_clip*`` names), whose ``head.proj`` is CLIP's embedding projection and is
kept so that ``model(x)`` equals CLIP's ``encode_image`` (512-d for RN101). ``kwargs`` may set
``num_classes`` explicitly to override either default.

Attention stays on timm's fused path (``scaled_dot_product_attention``); nothing here turns it
off.
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import timm
import timm.data
import timm.models
import torch
from huggingface_hub import constants as hf_constants
from safetensors import SafetensorError
from torch import nn

from robustkd.errors import ConfigError

__all__ = [
    "HUB",
    "backbone_input_config",
    "copy_student",
    "create_backbone",
    "freeze",
    "hub_url",
    "model_input_config",
]

HUB = "hub"
"""The ``weights`` value that selects the pretrained weights of the timm tag (HF hub)."""

_SPEC_KEYS = frozenset({"timm_name", "weights", "kwargs", "input_size"})
_INPUT_KEYS = ("input_size", "mean", "std", "interpolation")
# What a failed or corrupt download raises inside timm.create_model: huggingface_hub's
# LocalEntryNotFoundError and URL errors (OSError), a truncated or foreign file (safetensors,
# unpickling, torch.load's RuntimeError), tensors that do not fit (RuntimeError, ValueError).
_DOWNLOAD_ERRORS = (
    OSError,
    RuntimeError,
    ValueError,
    EOFError,
    pickle.UnpicklingError,
    SafetensorError,
)


# ----------------------------------------------------------------------------------------------
# Spec parsing
# ----------------------------------------------------------------------------------------------


def _parse_spec(spec: Mapping[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """Validate a backbone config entry; return (timm_name, weights, kwargs)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"backbone spec must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"unknown backbone key(s) {unknown} (allowed: {sorted(_SPEC_KEYS)})")
    name = spec.get("timm_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone key 'timm_name' must be a non-empty string, got {name!r}")
    if not timm.is_model(name):
        raise ConfigError(f"backbone key 'timm_name': {name!r} is not a timm model name")
    if "weights" not in spec:
        # Random init must be asked for (weights: null), never reached by omission.
        raise ConfigError(
            f"backbone {name!r}: key 'weights' is required ('hub', a file path, or null for "
            "random initialisation)"
        )
    weights = spec["weights"]
    if weights is not None and not isinstance(weights, str | Path):
        raise ConfigError(
            f"backbone {name!r}: key 'weights' must be 'hub', a path or null, got {weights!r}"
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"backbone {name!r}: key 'kwargs' must be a mapping, got {kwargs!r}")
    for key in ("pretrained", "pretrained_cfg_overlay"):
        if key in kwargs:
            raise ConfigError(
                f"backbone {name!r}: kwargs.{key} is not allowed; use the 'weights' key"
            )
    return name, weights, dict(kwargs)


def _is_clip_tower(name: str) -> bool:
    """Whether ``name`` is a CLIP image tower, whose ``head.proj`` is the embedding projection."""
    return "_clip" in name.split(".", 1)[0]


def _create_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``timm.create_model``: drop the classifier unless CLIP."""
    out = dict(kwargs)
    if "num_classes" not in out and not _is_clip_tower(name):
        out["num_classes"] = 0
    return out


# ----------------------------------------------------------------------------------------------
# Weight loading
# ----------------------------------------------------------------------------------------------


def _checkpoint_filter(model: nn.Module) -> Callable[..., dict[str, torch.Tensor]] | None:
    """The timm filter that converts foreign checkpoints for ``model``'s family, if any.

    timm passes each family's ``checkpoint_filter_fn`` (pos-embed resampling, OpenAI-CLIP key
    renaming, ...) to its builder without storing it on the model; it lives in the module that
    defines the model class.
    """
    module = sys.modules.get(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def _classifier_keys(model: nn.Module) -> tuple[str, ...]:
    """Prefixes of the classifier parameters named by the model's pretrained cfg."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier")
    if classifier is None:
        return ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{n}." for n in names)


def _load_local_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a local weight file into ``model`` with strict key and shape checking.

    Classifier weights present in the file but absent from the model (a 1000-class checkpoint
    loaded into a ``num_classes=0`` feature extractor) are dropped; any other missing or
    unexpected key is an error.
    """
    if not path.is_file():
        raise FileNotFoundError(f"backbone {name!r}: weights file {str(path)!r} does not exist")
    try:
        state_dict = timm.models.load_state_dict(str(path), use_ema=False)
    except Exception as err:  # unpickling/safetensors errors have no common base class
        raise ConfigError(
            f"backbone {name!r}: cannot read weights file {str(path)!r}: {err}"
        ) from err
    filter_fn = _checkpoint_filter(model)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    own = model.state_dict()
    drop = _classifier_keys(model)
    state_dict = {
        k: v for k, v in state_dict.items() if k in own or not (drop and k.startswith(drop))
    }
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ConfigError(
            f"backbone {name!r}: weights file {str(path)!r} does not fit the model: {err}"
        ) from err
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"backbone {name!r}: weights file {str(path)!r} does not match the model: "
            f"missing keys {result.missing_keys[:8]}"
            f"{' ...' if len(result.missing_keys) > 8 else ''}, "
            f"unexpected keys {result.unexpected_keys[:8]}"
            f"{' ...' if len(result.unexpected_keys) > 8 else ''}"
        )


def _pretrained_cfg(name: str) -> Any:
    """The timm pretrained cfg of ``name``'s tag, or a ConfigError if it has no weights."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:  # invalid tag
        raise ConfigError(f"backbone {name!r}: {err}") from err
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(
            f"backbone {name!r}: weights 'hub' requested but timm has no pretrained weights for "
            "this name; give a local file or null"
        )
    return cfg


def hub_url(name: str) -> str:
    """Where timm downloads the pretrained weights of ``name``'s tag from.

    timm prefers the tag's Hugging Face hub repository (``huggingface_hub`` is one of its
    requirements) and falls back to the tag's own URL.

    Args:
        name: A timm model name with a pretrained tag, e.g. ``vit_base_patch16_224.dino``.

    Returns:
        The hub repository's URL (``$HF_ENDPOINT/<repo>``, e.g.
        ``https://huggingface.co/timm/vit_base_patch16_224.dino``), else the tag's URL.

    Raises:
        ConfigError: The name is unknown or its tag has no pretrained weights.
    """
    cfg = _pretrained_cfg(name)
    if cfg.hf_hub_id:
        return f"{hf_constants.ENDPOINT}/{cfg.hf_hub_id}"
    return str(cfg.url or cfg.file)


def _create_from_hub(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Create ``name`` with the pretrained weights of its tag, downloaded from the hub."""
    url = hub_url(name)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except _DOWNLOAD_ERRORS as err:
        raise ConfigError(
            f"backbone {name!r}: could not download or read its pretrained weights from {url} "
            f"({type(err).__name__}: {err}); when offline, set 'weights' to a local "
            ".pth/.safetensors file"
        ) from err


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def create_backbone(spec: Mapping[str, Any]) -> nn.Module:
    """Create a timm backbone from its config entry.

    Args:
        spec: ``{"timm_name": str, "weights": "hub" | path | None, "kwargs": {...}}``.
            ``weights`` is required: ``"hub"`` downloads the tag's pretrained weights, a path
            loads a local ``.pth``/``.bin``/``.safetensors`` file (a state dict, or a checkpoint
            holding one under ``state_dict``/``model``), and ``None`` builds a random init.
            ``kwargs`` go to ``timm.create_model`` (e.g. ``img_size``, ``patch_size``,
            ``embed_dim``, ``depth``, ``num_heads``).

    Returns:
        The model in train mode, all parameters trainable. ``model.pretrained_cfg`` keeps the
        tag's normalisation (see :func:`model_input_config`).

    Raises:
        ConfigError: Unknown keys or model name, missing ``weights`` key, a file that does not
            match the model, or hub weights that cannot be downloaded.
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    name, weights, kwargs = _parse_spec(spec)
    create_kwargs = _create_kwargs(name, kwargs)
    if weights is None:
        return timm.create_model(name, pretrained=False, **create_kwargs)
    if weights == HUB:
        return _create_from_hub(name, create_kwargs)
    path = Path(weights).expanduser()
    if not path.is_file():  # fail before building a large model
        raise FileNotFoundError(f"backbone {name!r}: weights file {str(path)!r} does not exist")
    model = timm.create_model(name, pretrained=False, **create_kwargs)
    _load_local_weights(model, path, name)
    return model


def _input_config(cfg: Mapping[str, Any], img_size: Any) -> dict[str, Any]:
    out = {k: cfg[k] for k in _INPUT_KEYS}
    out["input_size"] = tuple(out["input_size"])
    out["mean"] = tuple(float(m) for m in out["mean"])
    out["std"] = tuple(float(s) for s in out["std"])
    if img_size is not None:  # the model was built for another size than the tag's
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        out["input_size"] = (out["input_size"][0], int(h), int(w))
    return out


def model_input_config(model: nn.Module) -> dict[str, Any]:
    """Input size and normalisation a backbone expects.

    timm's data config keeps the tag's ``input_size`` even when the model was built for
    another ``img_size``; for ViTs the size is taken from ``model.patch_embed.img_size``.

    Args:
        model: A model from :func:`create_backbone` (or any timm model).

    Returns:
        ``{"input_size": (C, H, W), "mean": (3,), "std": (3,), "interpolation": str}``; e.g.
        ImageNet mean/std for DINO, CLIP's for ``resnet101_clip.openai``.
    """
    cfg = timm.data.resolve_model_data_config(model)
    patch_embed = getattr(model, "patch_embed", None)
    img_size = getattr(patch_embed, "img_size", None) if patch_embed is not None else None
    return _input_config(cfg, img_size)


def backbone_input_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Like :func:`model_input_config`, from a config entry, without building the model.

    Args:
        spec: A backbone config entry (see :func:`create_backbone`).

    Returns:
        The same dict as :func:`model_input_config`; ``kwargs.img_size`` overrides the tag's
        input size.
    """
    name, _, kwargs = _parse_spec(spec)
    # input_size: the input side of a CNN trained at another size than its tag's (the
    # miniature's 32 px stand-ins); for ViTs kwargs.img_size already says it.
    size = spec.get("input_size") or kwargs.get("img_size")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:
        raise ConfigError(f"backbone {name!r}: {err}") from err
    data_cfg = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {})
    return _input_config(data_cfg, size)


def freeze(model: nn.Module) -> nn.Module:
    """Freeze a teacher in place: eval mode, no parameter requires grad.

    Args:
        model: The teacher.

    Returns:
        ``model`` itself.
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def copy_student(teacher: nn.Module) -> nn.Module:
    """A trainable student initialised from the teacher's weights.

    Args:
        teacher: The (possibly frozen) teacher.

    Returns:
        A deep copy in train mode with every parameter requiring grad; it shares no storage
        with the teacher.
    """
    student = copy.deepcopy(teacher)
    student.train()
    for p in student.parameters():
        p.requires_grad_(True)
    return student
