"""The one training loop every engine uses (distillation, fine-tuning, CRAFT's objectives).

A task supplies the trainable model and a loss function of a batch; the loop owns the rest:
AdamW with decoupled weight decay (or SGD with momentum, as the CIFAR KD literature trains;
no weight decay on norms, biases and embeddings either way), linear warmup then
cosine decay per step, mixed precision on GPUs, gradient clipping, checkpoints every N steps and
at each epoch end, exact resume, a JSON-lines log of every loss component (and, for a ``mixed``
distortion, of the images drawn per setting: ``n_draw/<setting>``), a progress line, and
a hard stop on a non-finite loss (checked where the log is flushed: no host synchronisation per
step, see :mod:`robustkd.engine.steplog`).

A checkpoint is resumed only if it was written by the same code (a digest of the package's
source), training settings, seed, resolved config and data; otherwise, e.g. when Snakemake reruns
a job after the code or a parameter changed, training starts afresh.

Resume is exact because every random choice of a step is a function of (seed, epoch, step) or
(seed, epoch, index): the batch order, the augmentation and the distortion's generator. The
global RNG states are checkpointed too, for anything inside the model that uses them.

Under ``torchrun`` (:mod:`robustkd.engine.distributed`) the loop runs data-parallel: each rank
takes its slice of every global batch, DDP averages gradients, loss components are averaged
across ranks before they are logged or checked, a preemption signal seen by any rank stops all
of them at the same step, and only rank 0 writes the checkpoint and the log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from robustkd.distortions import batch_shard, seeded_generator
from robustkd.distortions.mixed import draw_counts
from robustkd.engine.accel import compile_step
from robustkd.engine.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from robustkd.engine.data import (
    EpochBatches,
    ImageSet,
    epoch_batches,
    epoch_loader,
    to_unit_float,
)
from robustkd.engine.distributed import DistContext, barrier, context
from robustkd.engine.steplog import StepLog
from robustkd.errors import RobustKDError
from robustkd.provenance import code_digest

__all__ = [
    "PREEMPT_SIGNALS",
    "Preempted",
    "Task",
    "TrainConfig",
    "build_optimizer",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)

# Test hooks: send this process SIGKILL / SIGTERM right before the given global step (prove
# exact resume after a hard kill and after a preemption).
KILL_ENV = "ROBUSTKD_SIGKILL_AT_STEP"
TERM_ENV = "ROBUSTKD_SIGTERM_AT_STEP"
# Signals a cluster sends before it preempts or times out a job (SLURM: SIGTERM, or the
# signal given with `sbatch --signal`, conventionally SIGUSR1).
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RobustKDError):
    """Training stopped on a preemption signal after writing a checkpoint; rerun to resume."""


class _PreemptionGuard:
    """Record a preemption signal instead of dying, so the loop can checkpoint first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


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
        amp: Mixed precision on CUDA devices (ignored on CPU).
        amp_dtype: ``float16`` (with loss scaling) or ``bfloat16``.
        compile: Run each step's forward passes and loss through ``torch.compile`` on GPUs
            (ignored on CPU with a logged note; :func:`~robustkd.engine.accel.compile_step`).
        workers: Data-loading worker processes (persistent across epochs).
        log_every: Steps between progress lines.
        optimizer: ``adamw`` or ``sgd`` (momentum SGD, the CIFAR KD papers' optimizer).
        momentum: Momentum of ``sgd`` (ignored by ``adamw``).
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    clip_grad: float | None = None
    checkpoint_every: int = 0
    amp: bool = True
    amp_dtype: str = "float16"
    compile: bool = False
    workers: int = 0
    log_every: int = 50
    optimizer: str = "adamw"
    momentum: float = 0.9

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


class Task(Protocol):
    """What the loop trains: a model and the loss of one batch."""

    model: nn.Module

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Return named loss components of a batch; ``"loss"`` is the one minimised."""
        ...


def resolve_device(name: str = "auto") -> torch.device:
    """Return ``cuda`` when available for ``"auto"`` (else ``mps``, else ``cpu``), or ``name``.

    Under torchrun, ``"auto"`` picks this rank's GPU (``cuda:$LOCAL_RANK``).
    """
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    optimizer: str = "adamw",
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """AdamW (or momentum SGD) with no weight decay on 1-D parameters and token embeddings.

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
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr)


def _schedule(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class _TaskModule(nn.Module):
    """The task's loss as a module's forward, so DDP sees the forward pass it must sync."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.model = task.model  # the trainable parameters DDP averages
        self._task = task

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return self._task.loss(images, labels, generator)


def _step_fn(
    task: Task, ctx: DistContext, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]:
    """The loss of a step: the task's own, or through DDP when there are several ranks."""
    if ctx.world == 1:
        return task.loss
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (BatchNorm statistics, CRD memory banks) start equal (rank 0's are broadcast at
    # construction) and are then updated per rank; rank 0's are saved.
    return DistributedDataParallel(
        _TaskModule(task), device_ids=ids, forward_sync_buffers=False, gradient_as_bucket_view=True
    )


def _reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a CPU tensor over ranks (identity for a single process)."""
    if ctx.world == 1:
        return values
    return _all_reduce_sum(values, ctx) / ctx.world


def _all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a CPU tensor over ranks (NCCL reduces on the rank's GPU)."""
    out = values.to(torch.device("cuda", ctx.local_rank)) if _nccl() else values.clone()
    dist.all_reduce(out)
    return out.cpu()


def _nccl() -> bool:
    return dist.is_initialized() and dist.get_backend() == "nccl"


# Settings that do not change the result: a run may resume with other values of them.
_NOT_IDENTITY = ("workers", "log_every", "checkpoint_every")


def _run_identity(
    cfg: TrainConfig, record: Mapping[str, Any] | None, seed: int, dataset: Any, total: int
) -> dict[str, str]:
    """What a checkpoint must match to be resumed: code, settings, seed, data (as JSON).

    The record's ``train`` entry (the jobs record the training settings there too) is left out
    of ``config``: the training settings are compared without the result-neutral ones.
    """
    train_cfg = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}
    fingerprint = getattr(dataset, "fingerprint", None)
    fields = {
        "code": code_digest(),
        "training settings": {**train_cfg, "steps": total, "seed": seed},
        "config": {k: v for k, v in (record or {}).items() if k != "train"},
        "data": fingerprint() if callable(fingerprint) else None,
    }
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in fields.items()}


def _stale(saved: Mapping[str, str] | None, current: Mapping[str, str]) -> str | None:
    """Name what differs between a checkpoint's identity and this run's; None if nothing."""
    if saved is None:
        return "or unrecorded code, settings and data"
    differ = [k for k in current if saved.get(k) != current[k]]
    return " and ".join(differ) or None


def _preempted(guard: _PreemptionGuard, ctx: DistContext) -> bool:
    """Whether any rank received a preemption signal (all ranks then stop at this step)."""
    flag = torch.tensor([0.0 if guard.signum is None else 1.0])
    if ctx.world == 1:
        return bool(flag.item())
    return bool(_all_reduce_sum(flag, ctx).item() > 0)


def _duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the log lines of steps already done (a resumed run redoes the rest).

    A line that is not a JSON record with a step (the half-written last line of a killed job)
    is dropped with a warning naming the file.
    """
    if not path.exists():
        return
    kept, dropped = [], 0
    for ln in path.read_text(errors="replace").splitlines():
        try:
            done = int(json.loads(ln)["step"]) <= step
        except (ValueError, KeyError, TypeError):
            dropped += bool(ln)
            continue
        if done:
            kept.append(ln)
    if dropped:
        log.warning("%s: dropped %d unreadable line(s) (a killed job's last write?)", path, dropped)
    path.write_text("".join(f"{ln}\n" for ln in kept))


def train(
    task: Task,
    dataset: ImageSet,
    cfg: TrainConfig,
    *,
    seed: int,
    run_dir: str | os.PathLike[str],
    device: torch.device,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``task.model`` on ``dataset``; resume from ``run_dir/checkpoint.pt`` if present.

    Args:
        task: The model and its loss.
        dataset: Training images (train view: uint8, or float in [0, 1]), indexed by
            ``(epoch, index)`` keys (:class:`~robustkd.engine.data.EpochBatches`).
        cfg: Optimisation settings.
        seed: Seed of data order, augmentation and distortions.
        run_dir: Folder of the checkpoint and of ``log.jsonl``.
        device: Where to compute.
        record: Resolved config stored in every checkpoint.

    Under torchrun every rank calls this with the same arguments; rank 0 writes the files.

    Returns:
        A summary: steps, epochs, final loss components, images/s, resumed-from step.

    Raises:
        NonFiniteError: A loss component became NaN/inf (names the step and component).
        ValueError: The global batch does not split evenly between the ranks.
    """
    ctx = context()
    if cfg.batch_size % ctx.world:
        raise ValueError(
            f"global batch size {cfg.batch_size} does not split evenly between {ctx.world} "
            "data-parallel processes"
        )
    local = cfg.batch_size // ctx.world
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    model = task.model.to(device)

    # --- optimizer, schedule, mixed precision --------------------------------------------------
    steps_per_epoch = len(epoch_batches(len(dataset), cfg.batch_size, seed, 0))
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {cfg.batch_size} > dataset size {len(dataset)}")
    total = steps_per_epoch * cfg.epochs
    optimizer = build_optimizer(
        model, cfg.lr, cfg.weight_decay, optimizer=cfg.optimizer, momentum=cfg.momentum
    )
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, warmup, cfg.min_lr_ratio)
    )
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = getattr(torch, cfg.amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    # --- resume --------------------------------------------------------------------------------
    step, resumed_from = 0, None
    identity = _run_identity(cfg, record, seed, dataset, total)
    ckpt = load_checkpoint(ckpt_path, set_aside=ctx.main)
    stale = None if ckpt is None else _stale(ckpt.get("identity"), identity)
    if stale:
        log.warning(
            "ignoring %s: it was written by a run with other %s; training starts afresh",
            ckpt_path,
            stale,
        )
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"])
        step = resumed_from = int(ckpt["step"])
        log.info("resumed from %s at step %d/%d", ckpt_path, step, total)
    if ctx.main:
        _truncate_log(log_path, step)
    step_loss = compile_step(_step_fn(task, ctx, device), device, cfg.compile)

    def checkpoint() -> None:
        if not ctx.main:
            return
        save_checkpoint(
            ckpt_path,
            model=model,
            state={
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "epoch": step // steps_per_epoch,
                "train_config": asdict(cfg),
                "config": dict(record or {}),
                "seed": seed,
                "identity": identity,
            },
        )

    kill_at = int(os.environ.get(KILL_ENV, "-1"))
    term_at = int(os.environ.get(TERM_ENV, "-1"))
    interactive = sys.stderr.isatty()
    last: dict[str, float] = {}
    t0, seen = time.perf_counter(), 0
    t_mark, step_mark = t0, step  # the last progress line, for the ETA

    # --- loop ----------------------------------------------------------------------------------
    model.train()
    log_target = log_path if ctx.main else os.devnull
    with open(log_target, "a") as log_file, _PreemptionGuard() as preemption:
        # Loss components stay on the device until a boundary (progress line, checkpoint,
        # preemption, end): no host synchronisation per step.
        steplog = StepLog(log_file, lambda v: _reduce_mean(v, ctx), ckpt_path)
        # One loader for the run: its workers persist across epochs; the epoch travels with
        # each index to them, so the batches are those of a single process.
        sampler = EpochBatches()
        loader = epoch_loader(dataset, sampler, cfg.workers, pin_memory=device.type == "cuda")
        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set(
                epoch,
                [
                    b[ctx.rank * local : (ctx.rank + 1) * local]
                    for b in epoch_batches(len(dataset), cfg.batch_size, seed, epoch)[offset:]
                ],
            )
            for images, labels in loader:
                if step == kill_at:
                    log_file.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                if step == term_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                if _preempted(preemption, ctx):
                    steplog.flush()
                    checkpoint()
                    barrier()  # rank 0's checkpoint is on disk before any rank exits
                    name = signal.Signals(preemption.signum or signal.SIGTERM).name
                    raise Preempted(
                        f"{name} received: checkpoint of step {step} written to {ckpt_path}; "
                        "rerun the job to resume"
                    )
                # uint8 crosses to the device (a quarter of float32's bytes), becomes float there.
                images = to_unit_float(images.to(device, non_blocking=True))
                labels = labels.to(device, non_blocking=True)
                generator = seeded_generator(device, seed, epoch, step)
                autocast = (
                    torch.autocast(device.type, dtype=amp_dtype) if use_amp else nullcontext()
                )
                with autocast, batch_shard(ctx.rank, ctx.world):
                    losses = step_loss(images, labels, generator)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["loss"]).backward()
                if cfg.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                # The global batch's components (and a mixed distortion's draw counts per
                # setting), kept on the device until the next flush.
                draws = draw_counts(getattr(task, "distortion", None))
                steplog.add(step, epoch, lr, {**losses, **draws})
                step += 1
                seen += len(images) * ctx.world
                if step % cfg.log_every == 0 or step == total or interactive:
                    last = steplog.flush()
                    now = time.perf_counter()
                    rate = seen / max(now - t0, 1e-9)
                    # ETA: steps left x the mean step time since the last progress line.
                    eta = (total - step) * (now - t_mark) / max(step - step_mark, 1)
                    t_mark, step_mark = now, step
                    msg = (
                        f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} "
                        + " ".join(f"{k}={v:.4g}" for k, v in last.items())
                        + f" {rate:.0f} img/s ETA {_duration(eta)}"
                    )
                    if interactive:
                        print(f"\r{msg}", end="", file=sys.stderr, flush=True)
                    else:
                        log.info(msg)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    last = steplog.flush()
                    checkpoint()
            if step % steps_per_epoch == 0:
                last = steplog.flush()
                checkpoint()
        last = steplog.flush()
    if interactive:
        print(file=sys.stderr)
    elapsed = time.perf_counter() - t0
    return {
        "steps": total,
        "epochs": cfg.epochs,
        "final": last,
        "resumed_from": resumed_from,
        "images_per_s": seen / max(elapsed, 1e-9),
        "seconds": elapsed,
    }
