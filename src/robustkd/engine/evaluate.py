"""Evaluation: top-1/top-5 accuracy on (distorted) validation images.

Repeated with fresh random distortions, as the Contrastive Inversion protocol does (mean and
std over repeats).

How a GPU is fed (issue 25); none of it changes a number computed on CPU:

- **Reading**: one loader per job, its workers started once; batches pinned one at a time on
  their way to the GPU, never the whole set (:mod:`robustkd.engine.evalfeed`). At most
  :data:`AHEAD` batches are queued on the GPU ahead of the one it computes, which bounds the
  pinned memory in flight.
- **Precision** (``evaluation.amp``): on CUDA, the models run under autocast (bfloat16 where
  the GPU supports it, else float16) with TF32 matrix products for what stays float32; on CPU,
  or with ``amp`` off, in float32 throughout. Accuracy is counted from float32 logits.
- **No host synchronisation per batch**: hits accumulate on the device and are read once per
  pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from robustkd.distortions import Distortion, seeded_generator
from robustkd.engine.accel import apply_tf32, restore_tf32
from robustkd.engine.data import epoch_batches, to_unit_float
from robustkd.engine.evalfeed import Batch, EvalLoader, KeptBatches, to_device

__all__ = [
    "AHEAD",
    "EvalLoader",
    "autocast_dtype",
    "evaluate_classifier",
    "evaluate_parts",
    "topk_correct",
    "topk_hits",
]


AHEAD = 2
"""Batches queued on a GPU ahead of the one it computes: enough to keep it busy, and a bound
on the pinned host memory in flight (a batch's pinned copy is reused once its copy is done)."""


def topk_hits(logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """Count samples whose label is among the ``k`` highest logits, on the logits' device.

    Args:
        logits: (B, C) scores.
        labels: (B,) class indices.
        k: How many top classes count (clamped to C).

    Returns:
        The number of hits, an int64 scalar tensor (no host synchronisation).
    """
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # (B, k)
    return (top == labels[:, None]).any(dim=1).sum()


def topk_correct(logits: Tensor, labels: Tensor, k: int) -> int:
    """:func:`topk_hits` read back as an int."""
    return int(topk_hits(logits, labels, k))


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast type of an evaluation on ``device``: None for float32 throughout.

    Args:
        device: Where the models run.
        amp: The ``evaluation.amp`` setting.

    Returns:
        bfloat16 on a CUDA device that supports it, else float16; None on other devices or
        with ``amp`` off.
    """
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextmanager
def _tf32() -> Iterator[None]:
    """Allow TF32 in CUDA matrix products and convolutions, then restore the settings.

    Through :func:`robustkd.engine.accel.apply_tf32`, the same PyTorch API training uses
    (PyTorch 2.9 and later refuse to mix their two).
    """
    saved = apply_tf32(True)
    try:
        yield
    finally:
        restore_tf32(saved)


def _seeded(
    distortion: Distortion, device: torch.device, seed: int, r: int
) -> Callable[[Tensor, int], Tensor]:
    """``distortion`` in repeat ``r``: batch ``b`` draws from ``(seed, r, b)``'s generator."""
    return lambda x, b: distortion(x, seeded_generator(device, seed, r, b))


def _score(
    models: Sequence[nn.Module],
    source: Iterable[Batch],
    part_of: Sequence[int],
    n_parts: int,
    normalize: Callable[[Tensor], Tensor],
    *,
    device: torch.device,
    amp: bool,
    pin: bool,
    distort: Callable[[Tensor, int], Tensor] | None = None,
) -> np.ndarray:
    """Top-1 and top-5 hits of each model on each part: int64 (M, P, 2), read once at the end.

    Batch ``b`` of ``source`` belongs to part ``part_of[b]``; ``distort(images, b)`` is applied
    to its pixels in [0, 1] before ``normalize``.
    """
    dtype = autocast_dtype(device, amp)
    hits = torch.zeros(len(models), n_parts, 2, dtype=torch.int64, device=device)
    queued: deque[torch.cuda.Event] = deque()  # one per batch queued on a CUDA device
    with _tf32() if dtype is not None else nullcontext():
        for b, (images, labels) in enumerate(source):
            if len(queued) > AHEAD:  # wait for batch b - AHEAD - 1: its pinned copy is free
                queued.popleft().synchronize()
            x = to_unit_float(to_device(images, device, pin))  # (B, 3, S, S)
            y = to_device(labels, device, pin)  # (B,)
            x = normalize(x if distort is None else distort(x, b))
            for m, model in enumerate(models):
                cast: AbstractContextManager[object] = (
                    torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
                )
                with cast:
                    logits = model(x)
                logits = logits.float()  # (B, C)
                hits[m, part_of[b], 0] += topk_hits(logits, y, 1)
                hits[m, part_of[b], 1] += topk_hits(logits, y, 5)
            if device.type == "cuda":
                queued.append(torch.cuda.Event())
                queued[-1].record()
    return hits.cpu().numpy()


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    distortion: Distortion | None,
    normalize: Callable[[Tensor], Tensor],
    *,
    repeats: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    amp: bool = False,
    loader: EvalLoader | None = None,
    pin: bool | None = None,
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
        workers: Data-loading processes of a loader made for this call.
        amp: Autocast on CUDA (:func:`autocast_dtype`); ignored elsewhere.
        loader: The job's loader over ``dataset``, whose workers serve every call (default: a
            loader of ``workers`` processes for this call).
        pin: Copy batches through pinned memory (default: on CUDA devices).

    Returns:
        ``top1``/``top5`` mean and std (in %), per-repeat top-1, ``n`` images, ``repeats``.

    Raises:
        ValueError: ``loader`` reads another dataset.
    """
    if loader is None:
        loader = EvalLoader(dataset, workers)
    elif loader.dataset is not dataset:
        raise ValueError("evaluate_classifier: the loader given reads another dataset")
    model.eval().to(device)
    random = distortion is not None and distortion.is_random
    repeats = repeats if random else 1
    n = len(dataset)  # type: ignore[arg-type]
    batches = epoch_batches(n, batch_size, seed, 0, shuffle=False, drop_last=False)
    kept = KeptBatches(n) if repeats > 1 else None
    top1, top5 = [], []
    for r in range(repeats):
        distort = None if distortion is None else _seeded(distortion, device, seed, r)
        source: Iterable[Batch] = loader.read(batches)
        if kept is not None and r == 0:
            source = kept.through(source)
        elif kept is not None and kept.batches is not None:
            source = kept.batches
        hits = _score(
            [model],
            source,
            [0] * len(batches),
            1,
            normalize,
            device=device,
            amp=amp,
            pin=device.type == "cuda" if pin is None else pin,
            distort=distort,
        )[0, 0]
        top1.append(100.0 * int(hits[0]) / n)
        top5.append(100.0 * int(hits[1]) / n)
    return {
        "top1": float(np.mean(top1)),
        "top1_std": float(np.std(top1)),
        "top5": float(np.mean(top5)),
        "top5_std": float(np.std(top5)),
        "top1_repeats": top1,
        "repeats": repeats,
        "n": n,
    }


@torch.no_grad()
def evaluate_parts(
    models: Sequence[nn.Module],
    loader: EvalLoader,
    parts: Sequence[Sequence[int]],
    normalize: Callable[[Tensor], Tensor],
    *,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    pin: bool | None = None,
) -> list[list[dict[str, float | int]]]:
    """Score several classifiers on several parts of one dataset in a single pass, undistorted.

    Each batch is read once and scored by every model; batches never span two parts, and each
    part is cut into batches as :func:`evaluate_classifier` cuts a dataset of its own, so the
    scores are those of one evaluation per (model, part).

    Args:
        models: Classifiers of normalised images (B, 3, S, S) -> logits (B, C).
        loader: The loader of the dataset the parts index.
        parts: Index lists into the dataset (e.g. one per corruption and severity).
        normalize: Pixel normalisation of the models.
        batch_size: Images per forward pass.
        device: Where to compute.
        amp: Autocast on CUDA (:func:`autocast_dtype`); ignored elsewhere.
        pin: Copy batches through pinned memory (default: on CUDA devices).

    Returns:
        Per model, per part: ``top1`` and ``top5`` (in %) and ``n`` images.

    Raises:
        ValueError: An empty part.
    """
    batches: list[list[int]] = []
    part_of: list[int] = []
    for p, part in enumerate(parts):
        if not len(part):
            raise ValueError(f"evaluate_parts: part {p} is empty")
        for start in range(0, len(part), batch_size):
            batches.append([int(i) for i in part[start : start + batch_size]])
            part_of.append(p)
    for model in models:
        model.eval().to(device)
    hits = _score(
        models,
        loader.read(batches),
        part_of,
        len(parts),
        normalize,
        device=device,
        amp=amp,
        pin=device.type == "cuda" if pin is None else pin,
    )
    return [
        [
            {
                "top1": 100.0 * int(h[0]) / len(part),
                "top5": 100.0 * int(h[1]) / len(part),
                "n": len(part),
            }
            for h, part in zip(per_model, parts, strict=True)
        ]
        for per_model in hits
    ]
