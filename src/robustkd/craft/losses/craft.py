"""CRAFT's objective (the CRAFT paper's sections 3.3-3.5): reliability-weighted distillation.

:func:`pooled_embedding` builds the normalised multi-layer embedding; :func:`cross_view_infonce`
(L_con), :func:`reliability` (r), :func:`fragility_direction` (u) and :func:`dealignment` (L_de)
are its terms; :class:`CraftObjective` sums them with ERM and the r-weighted L_KD of
:func:`~robustkd.craft.losses.logit_kd.kd_loss`. Shapes: ``B`` images, ``V = M + 1`` views
(clean first), ``K`` classes, ``D`` embedding dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkd.craft.losses.logit_kd import kd_loss

__all__ = [
    "CraftConfig",
    "CraftObjective",
    "cross_view_infonce",
    "dealignment",
    "fragility_direction",
    "pooled_embedding",
    "reliability",
]


def pooled_embedding(
    stages: Sequence[Tensor], connectors: Sequence[nn.Module] | None = None
) -> Tensor:
    """``z = normalize(concat_l normalize(rho(h^l)))`` with ``rho`` global average pooling.

    Args:
        stages: Feature maps (N, C_l, H_l, W_l) of the selected layers.
        connectors: Optional per-layer maps applied after pooling (a student's projection to
            the teacher's width when they differ; identity otherwise).

    Returns:
        (N, sum_l C_l) unit vectors.
    """
    parts = []
    for i, h in enumerate(stages):
        z = h.mean(dim=(2, 3))  # (N, C_l)
        if connectors is not None:
            z = connectors[i](z)
        parts.append(F.normalize(z, dim=1))
    return F.normalize(torch.cat(parts, dim=1), dim=1)  # (N, D)


def cross_view_infonce(z_t: Tensor, z_s: Tensor, tau: float) -> Tensor:
    """CRAFT's cross-view InfoNCE (the second L_con of section 3.3), per image.

    Teacher anchor ``z_T(v_m(x_i))``; positives: the student's features of every view of the
    same image, ``z_S(v_m'(x_i))`` for all m'; denominator: the student's features of every
    view of every image of the batch::

        L_con(x_i) = -1/(M+1) sum_m log [ sum_m' exp(t_im . s_im' / tau)
                                          / sum_j sum_m' exp(t_im . s_jm' / tau) ]

    Args:
        z_t: (B, V, D) teacher embeddings (unit vectors; no gradient flows into them).
        z_s: (B, V, D) student embeddings (unit vectors).
        tau: Temperature.

    Returns:
        (B,) per-image losses.
    """
    b, v, _ = z_t.shape
    logits = torch.einsum("imd,jnd->imjn", z_t.detach(), z_s) / tau  # (B, V, B, V)
    own = logits[torch.arange(b), :, torch.arange(b), :]  # (B, V, V): same image
    log_pos = torch.logsumexp(own, dim=-1)  # (B, V)
    log_all = torch.logsumexp(logits.reshape(b, v, b * v), dim=-1)  # (B, V)
    return -(log_pos - log_all).mean(dim=1)  # (B,)


def reliability(
    teacher_logits: Tensor, alpha: float, beta: float, gamma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher reliability ``r(x) = sigmoid(alpha (agree(x) - gamma) - beta H(x))`` (sec. 3.4).

    ``agree`` is the fraction of views whose teacher top-1 equals the top-1 on the clean view
    (view 0, which counts itself); ``H`` the mean predictive entropy over the views.

    Args:
        teacher_logits: (B, V, K) teacher logits of the views, clean first.
        alpha: Sensitivity to agreement.
        beta: Sensitivity to entropy.
        gamma: Agreement threshold.

    Returns:
        ``(r, agree, entropy)``, each (B,), without gradient; ``r`` is in [0, 1].
    """
    with torch.no_grad():
        logp = F.log_softmax(teacher_logits.float(), dim=-1)  # (B, V, K)
        entropy = -(logp.exp() * logp).sum(-1)  # (B, V)
        top = logp.argmax(-1)  # (B, V)
        agree = (top == top[:, :1]).float().mean(1)  # (B,)
        h_bar = entropy.mean(1)  # (B,)
        r = torch.sigmoid(alpha * (agree - gamma) - beta * h_bar)
    return r, agree, h_bar


def fragility_direction(z_t: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """The teacher's fragility direction ``u(x) = Delta_T(x) / (||Delta_T(x)|| + eps)``.

    The paper writes ``Delta_T = 1/(M+1) sum_m (z_T(v_m) - zbar_T)``, which is identically zero
    (deviations from a mean sum to zero). We read it as the displacement of the view mean from
    the clean view, ``Delta_T = zbar_T - z_T(v_0) = M/(M+1) * mean_{m>=1} (z_T(v_m) - z_T(v_0))``:
    the direction in which corruption moves the teacher's feature ("teacher feature components
    that are sensitive to corruptions").

    Args:
        z_t: (B, V, D) teacher embeddings, clean view first.
        eps: Keeps ``u`` finite (and zero) when the teacher does not move.

    Returns:
        ``(u, delta)``: (B, D) unit-or-zero directions and the raw displacements.
    """
    z_t = z_t.detach()
    # zbar - z_0 written as a mean of differences: exactly zero when no view moves the teacher.
    delta = (z_t - z_t[:, :1]).sum(dim=1) / z_t.shape[1]  # (B, D)
    u = delta / (delta.norm(dim=1, keepdim=True) + eps)
    return u, delta


def dealignment(u: Tensor, z_s: Tensor) -> Tensor:
    """``L_de(x) = 1/(M+1) sum_m (u(x) . z_S(v_m(x)))^2`` per image, shape (B,)."""
    proj = torch.einsum("bd,bvd->bv", u.detach(), z_s)  # (B, V)
    return proj.pow(2).mean(dim=1)


@dataclass(frozen=True)
class CraftConfig:
    """Hyperparameters of CRAFT (section 3; values the paper does not give are assumed).

    Attributes:
        views: M, the corrupted views per image (plus the clean view).
        temperature: T of the logit KD term.
        tau: Temperature of the contrastive term (0.1, Table 1).
        alpha: Reliability's sensitivity to agreement.
        beta: Reliability's sensitivity to entropy.
        gamma: Reliability's agreement threshold.
        lambda_kd: Weight of the r-weighted KD term.
        lambda_con: Weight of the r-weighted contrastive term.
        lambda_de: Weight of the (1 - r)-weighted de-alignment term.
        eps: Of the fragility direction's normalisation.
        kd_views: ``clean``: L_KD on the clean view, as section 3.2 defines it (default);
            ``all``: averaged over every view.
    """

    views: int = 2
    temperature: float = 4.0
    tau: float = 0.1
    alpha: float = 10.0
    beta: float = 1.0
    gamma: float = 0.5
    lambda_kd: float = 1.0
    lambda_con: float = 1.0
    lambda_de: float = 1.0
    eps: float = 1e-8
    kd_views: str = "clean"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CraftConfig:
        """Build from a config mapping, ignoring keys that are not CRAFT hyperparameters."""
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        if out.kd_views not in ("clean", "all"):
            raise ValueError(f"craft kd_views must be 'clean' or 'all', got {out.kd_views!r}")
        if out.views < 1:
            raise ValueError(f"craft views (M) must be >= 1, got {out.views}")
        return out


class CraftObjective:
    """The full CRAFT loss of section 3.5 from the networks' outputs on every view.

    ``L = L_ERM + lambda_KD mean_i r_i L_KD(x_i) + lambda_con mean_i r_i L_con(x_i)
    + lambda_de mean_i (1 - r_i) L_de(x_i)``, with L_ERM the cross-entropy on the clean view.
    """

    def __init__(self, cfg: CraftConfig) -> None:
        """Store the hyperparameters."""
        self.cfg = cfg

    def __call__(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        z_s: Tensor,
        z_t: Tensor,
        labels: Tensor,
    ) -> dict[str, Tensor]:
        """Return the named components.

        Args:
            student_logits: (B, V, K), clean view first.
            teacher_logits: (B, V, K).
            z_s: (B, V, D) student embeddings.
            z_t: (B, V, D) teacher embeddings.
            labels: (B,) classes.

        Returns:
            ``loss`` (minimised), ``ce``, the weighted means ``kd``, ``con``, ``de`` (before
            their lambdas), and diagnostics ``reliability`` (mean r), ``agree``, ``entropy``
            and ``fragility`` (mean ||Delta_T||).
        """
        c = self.cfg
        ce = F.cross_entropy(student_logits[:, 0], labels)
        r, agree, entropy = reliability(teacher_logits, c.alpha, c.beta, c.gamma)  # (B,) each
        if c.kd_views == "clean":
            kd_i = kd_loss(student_logits[:, 0], teacher_logits[:, 0], c.temperature, "none")
        else:
            kd_i = kd_loss(student_logits, teacher_logits, c.temperature, "none").mean(1)
        con_i = cross_view_infonce(z_t, z_s, c.tau)  # (B,)
        u, delta = fragility_direction(z_t, c.eps)
        de_i = dealignment(u, z_s)  # (B,)
        kd = (r * kd_i).mean()
        con = (r * con_i).mean()
        de = ((1 - r) * de_i).mean()
        loss = ce + c.lambda_kd * kd + c.lambda_con * con + c.lambda_de * de
        return {
            "loss": loss,
            "ce": ce,
            "kd": kd,
            "con": con,
            "de": de,
            "reliability": r.mean(),
            "agree": agree.mean(),
            "entropy": entropy.mean(),
            "fragility": delta.norm(dim=1).mean(),
        }
