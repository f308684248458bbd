"""Evaluation: top-1/top-5 accuracy on (distorted) validation images.

Repeated with fresh random distortions, as the Contrastive Inversion protocol does (mean and
std over repeats).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from robustkd.distortions import Distortion, seeded_generator
from robustkd.engine.data import ImageSet, epoch_batches, make_loader, to_unit_float

__all__ = ["evaluate_classifier", "topk_correct"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Count samples whose label is among the ``k`` highest logits.

    Args:
        logits: (B, C) scores.
        labels: (B,) class indices.
        k: How many top classes count (clamped to C).

    Returns:
        The number of hits.
    """
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # (B, k)
    return int((top == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: ImageSet,
    distortion: Distortion | None,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    *,
    repeats: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
) -> dict[str, float | int | list[float]]:
    """Evaluate a classifier on ``dataset`` under ``distortion``, ``repeats`` times.

    Repeat ``r`` draws its distortions from generators keyed by ``(seed, r, batch)``, so the
    evaluation is repeatable; a deterministic distortion (blur) or none needs one repeat only.

    Args:
        model: Maps normalised images (B, 3, S, S) to logits (B, C).
        dataset: Evaluation images (eval view): uint8, or float in [0, 1].
        distortion: Applied to pixels in [0, 1] before ``normalize``; None for clean images.
        normalize: Pixel normalisation of the model.
        repeats: Number of evaluations with fresh random distortions.
        seed: Seed of the distortion streams.
        batch_size: Images per forward pass.
        device: Where to compute.
        workers: Data-loading processes.

    Returns:
        ``top1``/``top5`` mean and std (in %), per-repeat top-1, ``n`` images, ``repeats``.
    """
    model.eval().to(device)
    random = distortion is not None and distortion.is_random
    repeats = repeats if random else 1
    batches = epoch_batches(len(dataset), batch_size, seed, 0, shuffle=False, drop_last=False)
    # Decode once (uint8 for image sets); reuse the clean batches for every repeat.
    cached = list(make_loader(dataset, batches, workers, pin_memory=device.type == "cuda"))
    top1, top5 = [], []
    for r in range(repeats):
        hit1 = hit5 = 0
        for b, (images, labels) in enumerate(cached):
            images, labels = to_unit_float(images.to(device)), labels.to(device)
            if distortion is not None:
                images = distortion(images, seeded_generator(device, seed, r, b))
            logits = model(normalize(images)).float()  # (B, C)
            hit1 += topk_correct(logits, labels, 1)
            hit5 += topk_correct(logits, labels, 5)
        top1.append(100.0 * hit1 / len(dataset))
        top5.append(100.0 * hit5 / len(dataset))
    return {
        "top1": float(np.mean(top1)),
        "top1_std": float(np.std(top1)),
        "top5": float(np.mean(top5)),
        "top5_std": float(np.std(top5)),
        "top1_repeats": top1,
        "repeats": repeats,
        "n": len(dataset),
    }
