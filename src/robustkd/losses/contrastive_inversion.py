"""The Contrastive Inversion objective (Ravula et al., NeurIPS 2021, their ``simclr_st``).

The frozen teacher embeds the clean image, the student the distorted one; each student
embedding must pick its own teacher embedding among the batch's:
``loss = mean_i [ -s_i.t_i / tau + log sum_j exp(s_i.t_j / tau) ]`` with L2-normalised
embeddings, i.e. cross-entropy over the student x teacher similarity matrix with the diagonal
as target (j runs over every teacher embedding of the batch, the positive included).

Source: the official repository (github.com/Sriram-Ravula/Contrastive-Inversion), branch
``extra``, where the per-distortion experiment configs live (``rand{50,75,90}``,
``noise0{1,3,5}``, ``blur{21,37}``: loss ``simclr_st``, tau 0.1, batch 256). Its ``main``
branch holds only a sample config, with another variant (``simclr``, symmetric: both networks'
embeddings as anchors); we follow the experiments' ``simclr_st``, not that sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["contrastive_inversion_loss"]


def contrastive_inversion_loss(
    student: Tensor, teacher: Tensor, tau: float = 0.1, *, offset: int = 0
) -> dict[str, Tensor]:
    """Return the CI loss and the mean positive cosine similarity.

    Args:
        student: (B, D) student embeddings of distorted images.
        teacher: (B, D) teacher embeddings of the clean images (detached here), or (N, D)
            with N >= B: those of a whole global batch gathered from every process.
        tau: Temperature (0.1 in the official code).
        offset: Row of ``teacher`` holding student row 0's positive (the process's first
            sample in the global batch); student i's positive is teacher row ``offset + i``.

    Returns:
        ``{"loss": cross-entropy, "positive_cosine": mean s_i.t_i}``.
    """
    if (
        student.ndim != 2
        or teacher.ndim != 2
        or student.shape[1] != teacher.shape[1]
        or not 0 <= offset <= len(teacher) - len(student)
    ):
        raise ValueError(
            f"expected (B, D) student and (N >= offset + B, D) teacher embeddings, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)} with offset {offset}"
        )
    s = F.normalize(student.float(), dim=1)  # (B, D)
    t = F.normalize(teacher.detach().float(), dim=1)  # (N, D)
    logits = s @ t.T / tau  # (B, N): row i = student i against every teacher embedding
    target = torch.arange(len(s), device=s.device) + offset
    positives = t[offset : offset + len(s)]  # (B, D)
    return {
        "loss": F.cross_entropy(logits, target),
        "positive_cosine": (s * positives).sum(dim=1).mean().detach(),
    }
