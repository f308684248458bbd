"""Evaluation of the CRAFT study: clean and corrupted accuracy, and teacher-student alignment.

Accuracy comes from the shared :func:`robustkd.engine.evaluate.evaluate_classifier`, run on
the clean 32x32 test images and on every (corruption, severity) of the stored corrupted test
set (the CIFAR-10-C protocol: a fixed corrupted copy of the test set, evaluated once).

Alignment (the paper's Fig. 2) is the cosine similarity of the teacher's and the student's
pooled, normalised stage features of the same image, per layer and corruption severity, on a
fixed subset of test images; linear CKA (Kornblith et al. 2019), which compares feature spaces
of any widths and is invariant to rotations of either, is reported beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from robustkd.craft.models import CifarResNet
from robustkd.data.prepared import PreparedDataset
from robustkd.engine.distill import Normalize
from robustkd.engine.evaluate import evaluate_classifier
from robustkd.readback import load_array

__all__ = [
    "ArrayImages",
    "TestSuite",
    "accuracy_suite",
    "linear_cka",
    "load_corrupted",
    "pooled_stage_features",
    "stage_alignment",
    "summarize_accuracy",
]


class ArrayImages(Dataset):
    """uint8 images (N, H, W, 3) and labels as a dataset of ``(float (3, H, W), label)``.

    Pixels come out in [0, 1].
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Convert once to a float tensor (the miniature's and CIFAR's test sets are small)."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)  # a writable copy
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i].float() / 255.0, self.labels[i]

    def tensor(self, n: int | None = None) -> Tensor:
        """The first ``n`` images (all by default) as one float batch (n, 3, H, W)."""
        return self.images[:n].float() / 255.0


def load_corrupted(
    files: Mapping[str, str | Path], labels: np.ndarray, severities: Sequence[int]
) -> dict[tuple[str, int], ArrayImages]:
    """Read the corrupted test set: ``(corruption, severity) -> images``.

    Each file holds the N test images at severity 1, then 2, ... (as released).

    Raises:
        ValueError: A file whose length is not a multiple of the test set's.
    """
    out = {}
    n = len(labels)
    for name, path in files.items():
        arr = load_array(path, "CIFAR-10-C array", mmap_mode="r")
        if len(arr) != n * len(severities):
            raise ValueError(
                f"{path}: {len(arr)} images, expected {n} test images x "
                f"{len(severities)} severities"
            )
        for k, s in enumerate(severities):
            out[(name, int(s))] = ArrayImages(np.asarray(arr[k * n : (k + 1) * n]), labels)
    return out


def accuracy_suite(
    model: torch.nn.Module,
    normalize: Callable[[Tensor], Tensor],
    clean: ArrayImages,
    corrupted: Mapping[tuple[str, int], ArrayImages],
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, object]:
    """Top-1 (%) on the clean test set and on every (corruption, severity).

    Returns:
        ``{"clean": top1, "corrupted": {corruption: {severity: top1}}}``.
    """
    kw = {"repeats": 1, "seed": 0, "batch_size": batch_size, "device": device}
    clean_top1 = evaluate_classifier(model, clean, None, normalize, **kw)["top1"]
    per: dict[str, dict[int, float]] = {}
    for (name, s), images in corrupted.items():
        per.setdefault(name, {})[s] = evaluate_classifier(model, images, None, normalize, **kw)[
            "top1"
        ]
    return {"clean": clean_top1, "corrupted": per}


def summarize_accuracy(
    per: Mapping[str, Mapping[int, float]], heldout: Sequence[str], train: Sequence[str]
) -> dict[str, object]:
    """Aggregate per-(corruption, severity) accuracies.

    Args:
        per: ``{corruption: {severity: top1}}``.
        heldout: Corruptions CRAFT never trains on.
        train: CRAFT's training corruptions (those among ``per``).

    Returns:
        ``robust_all`` (mean over every corruption and severity), ``robust_heldout`` (the
        primary metric), ``robust_train`` (None when CRAFT trains on none of them),
        ``per_corruption`` (mean over severities), ``per_severity`` (mean over corruptions).
    """

    def mean_over(names: Sequence[str]) -> float | None:
        vals = [v for n in names if n in per for v in per[n].values()]
        return float(np.mean(vals)) if vals else None

    severities = sorted({s for d in per.values() for s in d})
    return {
        "robust_all": mean_over(list(per)),
        "robust_heldout": mean_over(heldout),
        "robust_train": mean_over([n for n in train if n in per]),
        "per_corruption": {n: float(np.mean(list(d.values()))) for n, d in per.items()},
        "per_severity": {
            int(s): float(np.mean([d[s] for d in per.values() if s in d])) for s in severities
        },
    }


@torch.no_grad()
def pooled_stage_features(
    model: CifarResNet,
    normalize: Callable[[Tensor], Tensor],
    images: Tensor,
    *,
    batch_size: int,
    device: torch.device,
) -> list[Tensor]:
    """Globally pooled output of every stage, per image: a list of (N, C_l) tensors on CPU."""
    model.eval().to(device)
    chunks: list[list[Tensor]] = []
    for i in range(0, len(images), batch_size):
        out = model.forward_features(normalize(images[i : i + batch_size].to(device)))
        chunks.append([h.mean(dim=(2, 3)).float().cpu() for h in out.stages])  # (b, C_l)
    return [torch.cat([c[layer] for c in chunks]) for layer in range(len(chunks[0]))]


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centred kernel alignment of two feature matrices (N, d1), (N, d2), in [0, 1]."""
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    num = (y.T @ x).pow(2).sum()
    den = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(num / den) if float(den) > 0 else float("nan")


def stage_alignment(
    teacher_feats: Mapping[str, Sequence[Tensor]], student_feats: Mapping[str, Sequence[Tensor]]
) -> dict[str, list[dict[str, float]]]:
    """Per condition and layer: mean cosine similarity and linear CKA of teacher vs student.

    Args:
        teacher_feats: Condition (``clean``, ``<corruption>-<severity>``) -> per-layer pooled
            features (N, C_l).
        student_feats: The same for the student, same images.

    Returns:
        Condition -> one ``{"layer", "cosine", "cka"}`` per layer; ``cosine`` is NaN where the
        widths differ (the features are then not in one space).
    """
    out = {}
    for cond, t_layers in teacher_feats.items():
        rows = []
        for i, (t, s) in enumerate(zip(t_layers, student_feats[cond], strict=True)):
            cos = (
                float((F.normalize(t, dim=1) * F.normalize(s, dim=1)).sum(1).mean())
                if t.shape[1] == s.shape[1]
                else float("nan")
            )
            rows.append({"layer": f"stage{i + 1}", "cosine": cos, "cka": linear_cka(t, s)})
        out[cond] = rows
    return out


class TestSuite:
    """The clean and corrupted test sets, loaded once per job."""

    def __init__(
        self,
        prepared: PreparedDataset,
        cifar10c: Mapping[str, str | os.PathLike[str]],
        cifar10c_labels: str | os.PathLike[str],
        corruptions: Mapping[str, Any],
    ) -> None:
        """Load the test split and its corrupted copy; check that their labels agree."""
        images, labels = prepared.load_split("test")
        stored = load_array(cifar10c_labels, "CIFAR-10-C labels")
        severities = [int(s) for s in corruptions["severities"]]
        if not np.array_equal(stored, np.tile(labels, len(severities))):
            raise ValueError(f"{cifar10c_labels}: labels differ from the prepared test split")
        self.clean = ArrayImages(images, labels)
        self.corrupted = load_corrupted(cifar10c, labels, severities)
        self.train = list(corruptions["craft_train"])
        self.heldout = [c for c in corruptions["evaluate"] if c not in self.train]
        self.n_classes = len(prepared.classes)

    def alignment_images(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` test images, clean and under every (corruption, severity)."""
        out = {"clean": self.clean.tensor(n)}
        for (name, s), images in self.corrupted.items():
            out[f"{name}-{s}"] = images.tensor(n)
        return out

    def evaluate(
        self, model: CifarResNet, normalize: Normalize, batch_size: int, device: torch.device
    ) -> dict[str, Any]:
        """Accuracy of ``model`` on every test set, summarised (see :func:`summarize_accuracy`)."""
        acc = accuracy_suite(
            model, normalize, self.clean, self.corrupted, batch_size=batch_size, device=device
        )
        summary = summarize_accuracy(acc["corrupted"], self.heldout, self.train)
        return {
            "clean": acc["clean"],
            **summary,
            "corrupted": acc["corrupted"],
            "heldout_corruptions": self.heldout,
            "train_corruptions": self.train,
            "n_test": len(self.clean),
            "chance": 100.0 / self.n_classes,
        }
