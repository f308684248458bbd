"""What the distillation loss reads from a ViT: CLS token, patch tokens, CLS->patch attention.

:func:`vit_forward` runs the model once (``forward_features``, fused attention on) and returns
the last block's tokens after the final norm, split into the CLS token and the patch tokens,
and optionally the last block's attention logits of the CLS query over the patch keys.

The logits come from the last block's own ``qkv`` projection, captured by a forward hook during
that single pass (registered once per model, :func:`attach_attention_tap`, not per call: a hook
registered and removed inside a ``torch.compile``-d step breaks its graph twice per call): only
the CLS row ``q_cls . k_patch * scale`` is formed, (B, H, N), never the N x N matrix.
``softmax`` of these logits equals row 0 of timm's unfused attention matrix restricted to the
patch columns and renormalised (the prefix columns - CLS and register tokens - are excluded, as
the paper distils "the class token attending to all patch tokens").
They are formed in float32 with autocast off, whatever the precision of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ViTOutputs", "attach_attention_tap", "cls_patch_attention_logits", "vit_forward"]

# The attribute of a ``qkv`` projection that holds its tap.
_TAP_ATTR = "_robustkd_qkv_tap"


@dataclass
class ViTOutputs:
    """Tokens of a ViT's last block (after the final norm) and its CLS attention logits.

    Attributes:
        cls: CLS token, (B, D).
        patches: Patch tokens, (B, N, D), prefix (CLS/register) tokens removed.
        attn_logits: Last block's CLS->patch attention logits per head, (B, H, N), before
            softmax (scaled by ``head_dim ** -0.5``, no temperature); ``None`` when not asked.
    """

    cls: Tensor
    patches: Tensor
    attn_logits: Tensor | None = None


def _check_vit(model: nn.Module) -> None:
    for attr in ("blocks", "num_prefix_tokens", "forward_features"):
        if not hasattr(model, attr):
            raise TypeError(
                f"vit_forward needs a timm VisionTransformer; {type(model).__name__} has no "
                f"attribute {attr!r}"
            )
    if getattr(model, "cls_token", None) is None:
        raise TypeError(f"{type(model).__name__} has no class token (built with class_token=False)")


def cls_patch_attention_logits(attn: nn.Module, qkv: Tensor, num_prefix_tokens: int) -> Tensor:
    """CLS->patch attention logits of a timm ``Attention`` from its ``qkv`` projection output.

    Mirrors timm's unfused branch (``q_norm``/``k_norm``, ``q * scale``, ``q @ k^T``) for the
    CLS query row only.

    Args:
        attn: The block's ``timm.layers.Attention`` (for ``num_heads``, ``head_dim``, ``scale``,
            ``q_norm``, ``k_norm``).
        qkv: Output of ``attn.qkv``, (B, T, 3 * H * head_dim), T = prefix + patch tokens.
        num_prefix_tokens: Number of CLS/register tokens before the patches (CLS at index 0).

    Returns:
        Logits of shape (B, H, N), N = T - num_prefix_tokens, in float32 (float64 for a
        float64 ``qkv``): formed with autocast disabled from ``qkv`` upcast, whatever the
        precision of the forward pass (the ``q_norm``/``k_norm`` of a qk-norm model run in
        float32 too).
    """
    b, t, _ = qkv.shape
    # float32 at least, autocast off: under mixed precision the projection runs in bf16/fp16,
    # but the logits the loss reads are not rounded to it (bf16 rounds a logit near 30 by up
    # to 0.06).
    qkv = qkv.to(torch.promote_types(qkv.dtype, torch.float32))
    with torch.autocast(qkv.device.type, enabled=False):
        qkv = qkv.reshape(b, t, 3, attn.num_heads, attn.head_dim)  # (B, T, 3, H, hd)
        q_cls = attn.q_norm(qkv[:, 0, 0])  # (B, H, hd)
        k_patch = attn.k_norm(qkv[:, num_prefix_tokens:, 1].transpose(1, 2))  # (B, H, N, hd)
        q_cls = (q_cls * attn.scale).unsqueeze(-2)  # (B, H, 1, hd)
        return (q_cls @ k_patch.transpose(-2, -1)).squeeze(-2)  # (B, H, N)


class _QkvTap:
    """Forward hook of a ``qkv`` projection: keeps its output while :attr:`active`.

    Attributes:
        active: Whether the projection's outputs are kept (only inside :func:`vit_forward`).
        output: The last output kept, (B, T, 3 * H * head_dim), or None.
    """

    def __init__(self) -> None:
        self.active = False
        self.output: Tensor | None = None

    def __call__(self, _module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self.active:
            self.output = output


def attach_attention_tap(model: nn.Module) -> None:
    """Register the hook :func:`vit_forward` reads the attention from (once; later calls no-op).

    :func:`vit_forward` attaches it at its first call too; attaching it when the model is built
    keeps even that first call free of hook registration (a graph break under compile). A
    ``deepcopy`` of the model (a student copied from its teacher) has a tap of its own.

    Args:
        model: A timm ``VisionTransformer``.

    Raises:
        TypeError: The last block's attention has no ``qkv`` projection.
    """
    _tap(model)


def _tap(model: nn.Module) -> _QkvTap:
    attn = model.blocks[-1].attn
    qkv_proj = getattr(attn, "qkv", None)
    if not isinstance(qkv_proj, nn.Module):
        raise TypeError(
            f"last block's attention ({type(attn).__name__}) has no fused 'qkv' projection"
        )
    tap = getattr(qkv_proj, _TAP_ATTR, None)
    if not isinstance(tap, _QkvTap):
        tap = _QkvTap()
        qkv_proj.register_forward_hook(tap)
        setattr(qkv_proj, _TAP_ATTR, tap)
    return tap


def vit_forward(model: nn.Module, x: Tensor, *, with_attention: bool) -> ViTOutputs:
    """One forward pass of a timm ViT returning CLS, patch tokens and CLS attention logits.

    Works with gradients (student) and under ``torch.no_grad()`` (teacher): the caller chooses.

    Args:
        model: A timm ``VisionTransformer`` with a class token.
        x: Normalised images, (B, 3, H, W).
        with_attention: Also return the last block's CLS->patch attention logits.

    Returns:
        The :class:`ViTOutputs` of the batch.

    Raises:
        TypeError: ``model`` is not a ViT with a class token, or its last block's attention has
            no ``qkv`` projection.
    """
    _check_vit(model)
    tap = _tap(model) if with_attention else None
    if tap is not None:
        tap.active, tap.output = True, None
    try:
        tokens = model.forward_features(x)  # (B, P + N, D)
    finally:
        if tap is not None:
            tap.active = False
    npre = model.num_prefix_tokens
    cls = tokens[:, 0]  # (B, D)
    patches = tokens[:, npre:]  # (B, N, D)
    logits = None
    if tap is not None:
        # The last capture is the last block's pass of this forward (a single one, unless
        # something re-runs the block, e.g. reentrant gradient checkpointing).
        qkv, tap.output = tap.output, None  # no reference kept past the call
        if qkv is None:
            raise TypeError("the last block's 'qkv' projection did not run in forward_features")
        logits = cls_patch_attention_logits(model.blocks[-1].attn, qkv, npre)
    return ViTOutputs(cls=cls, patches=patches, attn_logits=logits)
