"""The paper's multi-level distillation loss (section 3.3) and its ablation variants.

    loss = lambda_g * MSE(cls_s, cls_t)                       # global, eq. (4)
         + lambda_l * MSE(patches_s, patches_t)               # local, eq. (5)
         + lambda_a * KL(softmax(a_t / tau) || softmax(a_s / tau))  # attention, eq. (6)

``a`` are the last block's CLS->patch attention logits per head, (B, H, N)
(:func:`robustkd.models.vit_forward`); each head is its own distribution over the N patches
(the paper distils heads independently). The KL sums over patches and averages over heads and
batch. No ``tau ** 2`` factor is applied (the paper states none). The lambdas and tau are not
recoverable from the paper's text and come from config.

The ablation of Table 3 is a choice of terms (:data:`LOSS_VARIANTS`): the lambdas of the
terms a variant leaves out are set to 0. Every component is always reported: a term with a
zero weight is computed under ``no_grad`` for logging, or reported as 0 when its inputs are
missing (attention logits not computed).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkd.errors import ConfigError
from robustkd.models.taps import ViTOutputs

__all__ = [
    "LOSS_VARIANTS",
    "MultiLevelLoss",
    "attention_kl",
    "available_variants",
    "create_multilevel_loss",
    "needs_attention",
]

LOSS_VARIANTS: Mapping[str, frozenset[str]] = {
    "global": frozenset({"global"}),
    "global-local": frozenset({"global", "local"}),
    "global-attention": frozenset({"global", "attention"}),
    "ours": frozenset({"global", "local", "attention"}),
}
"""Terms used by each variant of the ablation (Table 3); ``ours`` is the full objective."""

_WEIGHT_KEYS = ("lambda_g", "lambda_l", "lambda_a", "tau")
_TERM_WEIGHT = {"global": "lambda_g", "local": "lambda_l", "attention": "lambda_a"}


def attention_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """KL(softmax(t / tau) || softmax(s / tau)) over the last dim, mean over the others.

    Args:
        student_logits: Student attention logits, (B, H, N).
        teacher_logits: Teacher attention logits, (B, H, N).
        tau: Softmax temperature (> 0).

    Returns:
        Scalar: the KL summed over the N patches, averaged over batch and heads.
    """
    log_q = F.log_softmax(student_logits.float() / tau, dim=-1)  # (B, H, N)
    log_p = F.log_softmax(teacher_logits.float() / tau, dim=-1)  # (B, H, N)
    kl = F.kl_div(log_q, log_p, reduction="none", log_target=True)  # (B, H, N)
    return kl.sum(dim=-1).mean()


class MultiLevelLoss(nn.Module):
    """Weighted sum of global (CLS), local (patch) and attention distillation terms.

    Args:
        lambda_g: Weight of the CLS-token MSE.
        lambda_l: Weight of the patch-token MSE.
        lambda_a: Weight of the attention KL.
        tau: Temperature of the attention softmax.

    Raises:
        ValueError: A negative weight, all weights zero, or ``tau <= 0``.
    """

    def __init__(
        self, lambda_g: float = 1.0, lambda_l: float = 1.0, lambda_a: float = 1.0, tau: float = 1.0
    ) -> None:
        super().__init__()
        for key, value in (("lambda_g", lambda_g), ("lambda_l", lambda_l), ("lambda_a", lambda_a)):
            if value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        if lambda_g == lambda_l == lambda_a == 0:
            raise ValueError("at least one of lambda_g, lambda_l, lambda_a must be > 0")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.lambda_g = float(lambda_g)
        self.lambda_l = float(lambda_l)
        self.lambda_a = float(lambda_a)
        self.tau = float(tau)

    @property
    def needs_attention(self) -> bool:
        """Whether the attention logits are needed (``lambda_a > 0``)."""
        return self.lambda_a > 0

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"lambda_g={self.lambda_g}, lambda_l={self.lambda_l}, lambda_a={self.lambda_a}, "
            f"tau={self.tau}"
        )

    def forward(self, student: ViTOutputs, teacher: ViTOutputs) -> dict[str, Tensor]:
        """Compute the loss and its components.

        Args:
            student: Student outputs on distorted images (with gradients).
            teacher: Teacher outputs on the clean images (detached here).

        Returns:
            ``{"loss", "global", "local", "attention"}``: the weighted sum and the unweighted
            components, all float32 scalars. Components with a zero weight carry no gradient.

        Raises:
            ValueError: ``lambda_a > 0`` but attention logits are missing, or student and
                teacher shapes differ.
        """
        s_cls, t_cls = student.cls.float(), teacher.cls.detach().float()  # (B, D)
        s_patch, t_patch = student.patches.float(), teacher.patches.detach().float()  # (B, N, D)
        s_attn, t_attn = student.attn_logits, teacher.attn_logits  # (B, H, N) | None
        have_attn = s_attn is not None and t_attn is not None
        for name, s, t in (("cls", s_cls, t_cls), ("patches", s_patch, t_patch)) + (
            (("attn_logits", s_attn, t_attn),) if have_attn else ()
        ):
            if s.shape != t.shape:  # F.mse_loss would broadcast silently
                raise ValueError(
                    f"student {name} {tuple(s.shape)} != teacher {name} {tuple(t.shape)}"
                )
        if self.lambda_a > 0 and not have_attn:
            raise ValueError("lambda_a > 0 but student or teacher attention logits are None")

        terms = {
            "global": (self.lambda_g, lambda: F.mse_loss(s_cls, t_cls)),
            "local": (self.lambda_l, lambda: F.mse_loss(s_patch, t_patch)),
            "attention": (
                self.lambda_a,
                lambda: attention_kl(s_attn, t_attn.detach(), self.tau),
            ),
        }
        out: dict[str, Tensor] = {}
        total = None
        for name, (weight, compute) in terms.items():
            if weight > 0:
                value = compute()
                total = weight * value if total is None else total + weight * value
            elif name == "attention" and not have_attn:
                value = s_cls.new_zeros(())  # not computed: its inputs were not produced
            else:
                with torch.no_grad():  # reported for logging only
                    value = compute()
            out[name] = value
        return {"loss": total, **out}


def available_variants() -> list[str]:
    """Names of the loss variants, sorted."""
    return sorted(LOSS_VARIANTS)


def _terms(variant: str) -> frozenset[str]:
    try:
        return LOSS_VARIANTS[variant]
    except KeyError:
        raise ConfigError(
            f"unknown distillation loss variant {variant!r} (known: {available_variants()})"
        ) from None


def needs_attention(variant: str) -> bool:
    """Whether a variant uses the attention term (and so needs attention logits).

    Args:
        variant: A name in :data:`LOSS_VARIANTS`.

    Raises:
        ConfigError: Unknown variant.
    """
    return "attention" in _terms(variant)


def create_multilevel_loss(variant: str, weights: Mapping[str, float]) -> MultiLevelLoss:
    """Build the loss of an ablation variant.

    Args:
        variant: ``"global"``, ``"global-local"``, ``"global-attention"`` or ``"ours"``.
        weights: ``{"lambda_g", "lambda_l", "lambda_a", "tau"}`` of the full objective; the
            lambdas of the terms the variant leaves out are set to 0.

    Returns:
        The configured :class:`MultiLevelLoss`.

    Raises:
        ConfigError: Unknown variant, a missing or unknown weight key, or invalid values.
    """
    terms = _terms(variant)
    missing = [k for k in _WEIGHT_KEYS if k not in weights]
    unknown = sorted(set(weights) - set(_WEIGHT_KEYS))
    if missing or unknown:
        raise ConfigError(
            f"distillation loss weights: missing keys {missing}, unknown keys {unknown} "
            f"(expected {list(_WEIGHT_KEYS)})"
        )
    kwargs = {k: float(weights[k]) for k in _WEIGHT_KEYS}
    for term, key in _TERM_WEIGHT.items():
        if term not in terms:
            kwargs[key] = 0.0
        elif kwargs[key] <= 0:
            raise ConfigError(
                f"distillation loss weights: {key} must be > 0 for variant {variant!r}, "
                f"got {kwargs[key]}"
            )
    try:
        return MultiLevelLoss(**kwargs)
    except ValueError as err:
        raise ConfigError(f"distillation loss weights: {err}") from err
