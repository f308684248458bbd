"""The CRAFT study's objectives: LogitKD, attention transfer, CRD and CRAFT (paper 004, sec. 3).

Functions compute one term from tensors, per example where the paper weights examples; the
tasks of :mod:`robustkd.craft.tasks` assemble them into the named loss components the training
loop logs. Shapes: ``B`` images, ``V = M + 1`` views (clean first), ``K`` classes, ``D``
embedding dimension.

- :func:`kd_loss`: ``T^2 KL(softmax(z_T / T) || softmax(z_S / T))`` (Hinton et al.; eq. of
  L_KD in section 3.2).
- :func:`attention_transfer_loss`: Zagoruyko & Komodakis, ``a = normalize(flatten(mean_c
  f^2))``, the squared L2 distance of the maps averaged over layers and images (L_feat).
- :class:`CRDLoss`: Tian et al.'s contrastive representation distillation with a memory bank of
  negatives (buffers), NCE, fixed normalisation constants and momentum updates.
- CRAFT (sections 3.3-3.5): :func:`pooled_embedding`, :func:`cross_view_infonce`,
  :func:`reliability`, :func:`fragility_direction`, :func:`dealignment` and
  :class:`CraftObjective`, their reliability-weighted sum with ERM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CRDLoss",
    "CraftConfig",
    "CraftObjective",
    "attention_map",
    "attention_transfer_loss",
    "cross_view_infonce",
    "dealignment",
    "fragility_direction",
    "kd_loss",
    "nce_loss",
    "negative_pools",
    "pooled_embedding",
    "reliability",
    "sample_negatives",
]


# ----------------------------------------------------------------------------------------------
# Logit KD and attention transfer
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# CRD (Tian et al. 2020)
# ----------------------------------------------------------------------------------------------


def nce_loss(scores: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    """CRD's NCE loss of normalised scores (B, 1 + K): column 0 the positive, then K negatives.

    With noise probability ``Pn = 1 / N``: ``-mean_i [log P(D=1 | pos) + sum_k log P(D=0 | neg_k)]``
    where ``P(D=1 | x) = x / (x + K Pn)``.
    """
    k = scores.shape[1] - 1
    m_pn = k / n_data
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + m_pn + eps))  # (B,)
    log_d0 = torch.log(m_pn / (scores[:, 1:] + m_pn + eps))  # (B, K)
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def sample_negatives(
    labels: Tensor, pools: Tensor, pool_sizes: Tensor, k: int, generator: torch.Generator | None
) -> Tensor:
    """Draw ``k`` negatives per anchor among the samples of the other classes.

    CRD's ``exact`` sampling mode as RepDistiller draws it (``CIFAR100InstanceSample``: numpy's
    ``choice`` over the other classes' samples, with replacement only when ``k`` exceeds
    them): a uniformly random set of ``k`` *distinct* samples of the other classes, in random
    order, whenever the anchor's pool holds at least ``k``; with replacement only when it holds
    fewer. (At paper scale, 16,384 of the 40,500 samples of the other nine classes: drawing
    with replacement would repeat about 18 % of them.)

    Without replacement, each anchor takes the first ``k`` entries of a random permutation of
    its pool (``torch.randperm``; numpy's ``choice`` without replacement does the same), one
    anchor after the other; with replacement, ``k`` uniform positions. Every draw comes from
    ``generator``, so the negatives are a function of its state and the labels: the training
    loop's per-(seed, epoch, step) generators make them resume-exact. Cost: O(pool) per
    anchor (about 0.1 s for 128 anchors of a 40,500 pool on one CPU thread).

    Args:
        labels: (B,) classes of the anchors.
        pools: (C, L) per class, the dataset indices of samples of *other* classes (padded).
        pool_sizes: (C,) valid lengths of the rows of ``pools``.
        k: Negatives per anchor (``nce_k``).
        generator: Source of randomness (on the device of ``labels``).

    Returns:
        (B, k) dataset indices; each row without repeats when its pool holds ``>= k`` samples.

    Raises:
        ValueError: ``k < 1``, or an anchor whose pool is empty (a single-class training set).
    """
    if k < 1:
        raise ValueError(f"sample_negatives: k must be >= 1, got {k}")
    sizes = pool_sizes[labels].tolist()  # (B,) pool size of each anchor
    if min(sizes, default=1) < 1:
        raise ValueError("sample_negatives: an anchor's class has no negatives (one class only)")
    device = labels.device
    pos = torch.empty((len(sizes), k), dtype=torch.long, device=device)
    for i, n in enumerate(sizes):
        if n >= k:
            pos[i] = torch.randperm(n, generator=generator, device=device)[:k]
        else:  # fewer candidates than k: with replacement, as RepDistiller
            u = torch.rand(k, generator=generator, device=device, dtype=torch.float64)
            pos[i] = (u * n).long()  # uniform in [0, n)
    return torch.gather(pools[labels], 1, pos)


def negative_pools(train_labels: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """Per class, the indices of the other classes' samples (the ``pools`` of sampling)."""
    labels = torch.as_tensor(train_labels).long()
    n_classes = int(labels.max()) + 1
    rows = [torch.nonzero(labels != c).flatten() for c in range(n_classes)]
    sizes = torch.tensor([len(r) for r in rows])
    pools = torch.zeros(n_classes, int(sizes.max()), dtype=torch.long)
    for c, r in enumerate(rows):
        pools[c, : len(r)] = r
    return pools, sizes


class CRDLoss(nn.Module):
    """Contrastive representation distillation (Tian et al., ICLR 2020, official code's layout).

    Student and teacher penultimate features are embedded by linear heads and L2-normalised.
    Two memory banks (buffers, so they are checkpointed with the model) hold one embedding per
    training image: ``memory_s`` the students', ``memory_t`` the teachers'. Each anchor is
    contrasted with its own memory entry (positive) and ``nce_k`` others (negatives) of the
    *other* network's bank; scores ``exp(v . m / nce_t)`` are divided by constants ``Z``
    fixed at the first batch (``mean score * N``), and the NCE loss is summed over both
    directions. After the scores are computed, the banks move towards the batch's embeddings
    with momentum ``nce_m`` and are re-normalised.

    Negatives come from :func:`sample_negatives` (RepDistiller's ``exact`` mode: other-class
    samples, without replacement when the pool allows).
    """

    def __init__(
        self,
        s_dim: int,
        t_dim: int,
        n_data: int,
        *,
        feat_dim: int = 128,
        nce_k: int = 16384,
        nce_t: float = 0.1,
        nce_m: float = 0.5,
    ) -> None:
        """Build the heads and the memory banks.

        Args:
            s_dim: Student feature dimension.
            t_dim: Teacher feature dimension.
            n_data: Number of training images (rows of the banks).
            feat_dim: Embedding dimension.
            nce_k: Negatives per anchor.
            nce_t: Temperature of the scores: 0.1, the CRAFT paper's value for CRD (its
                Table 1, section 4.4); Tian et al.'s paper and code use 0.07.
            nce_m: Momentum of the bank updates.
        """
        super().__init__()
        self.n_data, self.nce_k, self.nce_t, self.nce_m = n_data, nce_k, nce_t, nce_m
        self.embed_s = nn.Linear(s_dim, feat_dim)
        self.embed_t = nn.Linear(t_dim, feat_dim)
        stdv = 1.0 / math.sqrt(feat_dim / 3)  # the official init: rows of norm about 1
        self.register_buffer("memory_s", torch.rand(n_data, feat_dim) * 2 * stdv - stdv)
        self.register_buffer("memory_t", torch.rand(n_data, feat_dim) * 2 * stdv - stdv)
        self.register_buffer("z_s", torch.tensor(-1.0))  # < 0: not yet set
        self.register_buffer("z_t", torch.tensor(-1.0))

    @torch.no_grad()
    def update_memory(self, v_s: Tensor, v_t: Tensor, index: Tensor) -> None:
        """Move the bank rows of ``index`` towards the embeddings and re-normalise them.

        ``m <- normalize(nce_m * m + (1 - nce_m) * v)``.
        """
        for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            rows = bank.index_select(0, index) * self.nce_m + v.detach() * (1 - self.nce_m)
            bank.index_copy_(0, index, F.normalize(rows, dim=1))

    def forward(
        self, f_s: Tensor, f_t: Tensor, index: Tensor, negatives: Tensor
    ) -> dict[str, Tensor]:
        """Return the CRD loss of a batch and update the banks.

        Args:
            f_s: (B, s_dim) student penultimate features.
            f_t: (B, t_dim) teacher penultimate features.
            index: (B,) dataset indices of the images (their positives).
            negatives: (B, nce_k) dataset indices of the negatives.

        Returns:
            ``{"crd": loss, "crd_student": ..., "crd_teacher": ...}`` (student-anchored and
            teacher-anchored NCE terms).
        """
        v_s = F.normalize(self.embed_s(f_s), dim=1)  # (B, D)
        v_t = F.normalize(self.embed_t(f_t.detach()), dim=1)  # (B, D)
        idx = torch.cat([index[:, None], negatives], 1)  # (B, 1 + K)
        mem_s = self.memory_s[idx]  # (B, 1 + K, D), no gradient (a buffer)
        mem_t = self.memory_t[idx]
        out_s = torch.exp(torch.bmm(mem_t, v_s[:, :, None]).squeeze(2) / self.nce_t)  # (B, 1+K)
        out_t = torch.exp(torch.bmm(mem_s, v_t[:, :, None]).squeeze(2) / self.nce_t)
        if float(self.z_s) < 0:  # fixed at the first batch, as the official code
            self.z_s.fill_(float(out_s.detach().mean()) * self.n_data)
            self.z_t.fill_(float(out_t.detach().mean()) * self.n_data)
        loss_s = nce_loss(out_s / self.z_s, self.n_data)
        loss_t = nce_loss(out_t / self.z_t, self.n_data)
        self.update_memory(v_s, v_t, index)
        return {"crd": loss_s + loss_t, "crd_student": loss_s, "crd_teacher": loss_t}


# ----------------------------------------------------------------------------------------------
# CRAFT (sections 3.3-3.5)
# ----------------------------------------------------------------------------------------------


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
