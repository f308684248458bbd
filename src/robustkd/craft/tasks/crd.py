"""The CRD method of the CRAFT study: contrastive representation distillation (Tian et al.)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustkd.craft.losses.crd import CRDLoss, negative_pools, sample_negatives
from robustkd.craft.models import CifarResNet
from robustkd.craft.tasks.base import StudentTask, register_task

__all__ = ["CRDTask"]


@register_task("crd")
class CRDTask(StudentTask):
    """CRD: ``L_ERM + lambda_crd L_CRD`` on the penultimate features (Tian et al.)."""

    config_keys = ("lambda_crd", "feat_dim", "nce_k", "nce_t", "nce_m")

    def __init__(
        self,
        student: CifarResNet,
        teacher: CifarResNet,
        normalize: Callable[[Tensor], Tensor],
        *,
        lambda_crd: float,
        train_labels: Sequence[int] | Tensor,
        feat_dim: int,
        nce_k: int,
        nce_t: float,
        nce_m: float,
    ) -> None:
        """Build the CRD module (heads and memory banks) for the training set.

        Args:
            student: The student.
            teacher: The frozen teacher.
            normalize: Pixel normalisation.
            lambda_crd: Weight of the CRD term.
            train_labels: Label of every training image (in dataset order).
            feat_dim: Embedding dimension.
            nce_k: Negatives per anchor, drawn from the other classes without replacement
                when the pool allows (:func:`~robustkd.craft.losses.crd.sample_negatives`).
            nce_t: Temperature (0.1 in the CRAFT paper's Table 1; 0.07 in CRD's).
            nce_m: Memory momentum.
        """
        crd = CRDLoss(
            student.num_features,
            teacher.num_features,
            len(train_labels),
            feat_dim=feat_dim,
            nce_k=nce_k,
            nce_t=nce_t,
            nce_m=nce_m,
        )
        super().__init__(student, teacher, normalize, {"crd": crd})
        self.crd, self.lambda_crd = crd, lambda_crd
        self.pools, self.pool_sizes = negative_pools(train_labels)

    @classmethod
    def settings(
        cls, cfg: Mapping[str, Any], *, train_labels: Sequence[int] | Tensor
    ) -> dict[str, Any]:
        """:attr:`config_keys` and the training labels (the memory bank's rows)."""
        return {"train_labels": train_labels, **{k: cfg[k] for k in cls.config_keys}}

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "crd", "crd_student", "crd_teacher"}``."""
        labels, index = targets[:, 0], targets[:, 1]
        t = self._teacher(images)
        s = self.student.forward_features(self.normalize(images))
        ce = F.cross_entropy(s.logits, labels)
        pools, sizes = self.pools.to(images.device), self.pool_sizes.to(images.device)
        negatives = sample_negatives(labels, pools, sizes, self.crd.nce_k, generator)  # (B, K)
        crd = self.crd(s.pooled, t.pooled, index, negatives)
        return {"loss": ce + self.lambda_crd * crd["crd"], "ce": ce, **crd}
