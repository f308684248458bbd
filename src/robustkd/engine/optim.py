"""The training loop's settings (:class:`TrainConfig`) and the optimizer and schedule they build.

AdamW with decoupled weight decay, or SGD with momentum as the CIFAR KD literature trains; no
weight decay on norms, biases and embeddings either way. The learning rate warms up linearly,
then decays along a cosine, per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

__all__ = ["TrainConfig", "build_optimizer", "stretch_epochs", "warmup_cosine"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step (global batch, split evenly between data-parallel ranks).
        lr: Peak learning rate (after warmup).
        weight_decay: AdamW weight decay (not applied to norms, biases, embeddings).
        warmup_epochs: Linear warmup length, in epochs (may be fractional).
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        clip_grad: Max global gradient norm; None disables clipping.
        checkpoint_every: Save a checkpoint every this many steps (0: only at epoch ends).
        checkpoint_async: Write those checkpoints on a background thread from a host copy of
            the state (one write in flight; a preemption's checkpoint is written at once):
            :class:`~robustkd.engine.checkpoint.CheckpointWriter`.
        amp: Mixed precision on CUDA devices (ignored on CPU).
        amp_dtype: ``float16`` (with loss scaling) or ``bfloat16``.
        compile: Run each step's forward passes and loss through ``torch.compile`` on GPUs
            (ignored on CPU with a logged note; :func:`~robustkd.engine.accel.compile_step`).
        workers: Data-loading worker processes (persistent across epochs).
        log_every: Steps between progress lines.
        optimizer: ``adamw`` or ``sgd`` (momentum SGD, the CIFAR KD papers' optimizer).
        momentum: Momentum of ``sgd`` (ignored by ``adamw``).
        fused: The fused (single-kernel) optimizer step on CUDA; ignored elsewhere. With it
            the grad scaler of float16 hands its inf/NaN flag to the kernel on the device
            instead of reading it to the host each step (a synchronisation per step).
        tf32: TF32 matrix products and convolutions on CUDA where float32 remains; ignored
            elsewhere (:func:`~robustkd.engine.accel.set_tf32`).
        deterministic: Deterministic CUDA kernels (cuDNN, ``use_deterministic_algorithms``;
            :func:`~robustkd.engine.devices.deterministic`); nothing changes on CPU.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    clip_grad: float | None = None
    checkpoint_every: int = 0
    checkpoint_async: bool = False
    amp: bool = True
    amp_dtype: str = "float16"
    compile: bool = False
    workers: int = 0
    log_every: int = 50
    optimizer: str = "adamw"
    momentum: float = 0.9
    fused: bool = True
    tf32: bool = True
    deterministic: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TrainConfig:
        """Build from a config section, refusing unknown keys.

        Raises:
            ValueError: An unknown key (named).
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown} (known: {sorted(known)})")
        return cls(**dict(cfg))


def stretch_epochs(cfg: TrainConfig, epochs: int) -> TrainConfig:
    """The run at ``epochs`` epochs with its schedule's shape kept.

    The warmup grows or shrinks in the same ratio, so the run spends the same share of its
    steps warming up.

    Used for Fig 3's label fractions too small for ``experiments.fig3.min_steps`` steps in the
    configured epochs (:func:`robustkd.labelfractions.fraction_run_epochs`). Example: 6 epochs,
    warmup 0.5 epochs, stretched to 100 -> warmup 0.5 * 100 / 6 = 8.33 epochs.

    Raises:
        ValueError: ``epochs`` below 1 (named).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    if epochs == cfg.epochs:
        return cfg
    return replace(cfg, epochs=epochs, warmup_epochs=cfg.warmup_epochs * epochs / cfg.epochs)


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    optimizer: str = "adamw",
    momentum: float = 0.9,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """AdamW (or momentum SGD) with no weight decay on 1-D parameters and token embeddings.

    Args:
        model: Its trainable parameters are optimised.
        lr: Learning rate.
        weight_decay: Decoupled weight decay of the parameters that decay.
        optimizer: ``adamw`` or ``sgd``.
        momentum: Momentum of ``sgd``.
        fused: One fused kernel per step (CUDA parameters only): a
            :class:`torch.amp.GradScaler` then passes its inf/NaN flag to that kernel on the
            device instead of reading it to the host.

    Raises:
        ValueError: An unknown ``optimizer``.
    """
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r} (known: 'adamw', 'sgd')")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token"))
        (no_decay if skip else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=fused or None)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def warmup_cosine(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """The learning-rate factor of a step: linear warmup, then cosine decay to ``min_ratio``.

    Args:
        total: Steps of the run.
        warmup: Warmup steps (the factor rises to 1 over them).
        min_ratio: The final factor, as a fraction of the peak learning rate.

    Returns:
        ``factor(step)`` for :class:`torch.optim.lr_scheduler.LambdaLR`.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor
