"""The one training loop every engine uses (distillation, fine-tuning, CRAFT's objectives).

A task supplies the trainable model and a loss function of a batch; the loop owns the rest:
AdamW with decoupled weight decay (or SGD with momentum, as the CIFAR KD literature trains;
no weight decay on norms, biases and embeddings either way), linear warmup then
cosine decay per step, mixed precision on GPUs, gradient clipping, checkpoints every N steps and
at each epoch end, exact resume, a JSON-lines log of every loss component (and, for a ``mixed``
distortion, of the images drawn per setting: ``n_draw/<setting>``), a progress line, and
a hard stop on a non-finite loss (checked where the log is flushed: no host synchronisation per
step, see :mod:`robustkd.engine.steplog`). Its pieces live beside it: the optimizer and schedule
in :mod:`robustkd.engine.optim`, checkpoints and what makes one resumable in
:mod:`robustkd.engine.checkpoint`, signals in :mod:`robustkd.engine.preemption`, the faults
tests inject at a given step in :mod:`robustkd.engine.faults`.

A checkpoint is resumed only if it was written by the same code (a digest of the package's
source), training settings, seed, resolved config and data; otherwise, e.g. when Snakemake reruns
a job after the code or a parameter changed, training starts afresh.

Resume is exact because every random choice of a step is a function of (seed, epoch, step) or
(seed, epoch, index): the batch order, the augmentation and the distortion's generator. The
global RNG states are checkpointed too, for anything inside the model that uses them.

Under ``torchrun`` (:mod:`robustkd.engine.distributed`) the loop runs data-parallel: each rank
takes its slice of every global batch, DDP averages gradients, loss components are averaged
across ranks before they are logged or checked, a preemption signal seen by any rank stops all
of them at the same step, and only rank 0 writes the checkpoint and the log (and holds the run
folder: :mod:`robustkd.engine.runlock`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from robustkd.distortions import batch_shard, seeded_generator
from robustkd.distortions.mixed import draw_counts
from robustkd.engine.accel import compile_step, set_tf32
from robustkd.engine.checkpoint import (
    CheckpointWriter,
    load_checkpoint,
    restore_rng,
    run_identity,
    stale_fields,
)
from robustkd.engine.data import (
    EpochBatches,
    ImageSet,
    closing_loader,
    epoch_batches,
    epoch_loader,
    to_unit_float,
)
from robustkd.engine.devicedecode import (
    EncodedTrainSet,
    collate_encoded,
    decode_batch,
    device_decode,
)
from robustkd.engine.devices import deterministic, resolve_device
from robustkd.engine.distributed import DistContext, barrier, context, reduce_mean
from robustkd.engine.faults import StepFaults
from robustkd.engine.optim import TrainConfig, build_optimizer, warmup_cosine
from robustkd.engine.preemption import Preempted, PreemptionGuard, preempted
from robustkd.engine.runlock import hold_run_folder
from robustkd.engine.steplog import StepLog, truncate_log
from robustkd.joblog import note_checkpoint

__all__ = ["Task", "resolve_device", "train"]

log = logging.getLogger(__name__)


class Task(Protocol):
    """What the loop trains: a model and the loss of one batch."""

    model: nn.Module

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Return named loss components of a batch; ``"loss"`` is the one minimised."""
        ...


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


def _duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


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
    ``run_dir`` is held exclusively meanwhile (:mod:`robustkd.engine.runlock`; a job holding it
    already keeps it).

    Returns:
        A summary: steps, epochs, final loss components, images/s, resumed-from step.

    Raises:
        NonFiniteError: A loss component became NaN/inf (names the step and component).
        ValueError: The global batch does not split evenly between the ranks.
        RunFolderBusy: Another process writes ``run_dir`` (names it and that process).
        Preempted: SIGTERM or SIGUSR1 arrived (after a checkpoint, in the loop).
    """
    with hold_run_folder(run_dir), deterministic(cfg.deterministic, device):
        return _train(task, dataset, cfg, seed, Path(run_dir), device, record)


def _train(
    task: Task,
    dataset: ImageSet,
    cfg: TrainConfig,
    seed: int,
    run_dir: Path,
    device: torch.device,
    record: Mapping[str, Any] | None,
) -> dict[str, Any]:
    ctx = context()
    if cfg.batch_size % ctx.world:
        raise ValueError(
            f"global batch size {cfg.batch_size} does not split evenly between {ctx.world} "
            "data-parallel processes"
        )
    local = cfg.batch_size // ctx.world
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    model = task.model.to(device)

    # --- optimizer, schedule, mixed precision --------------------------------------------------
    steps_per_epoch = len(epoch_batches(len(dataset), cfg.batch_size, seed, 0))
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {cfg.batch_size} > dataset size {len(dataset)}")
    total = steps_per_epoch * cfg.epochs
    optimizer = build_optimizer(
        model,
        cfg.lr,
        cfg.weight_decay,
        optimizer=cfg.optimizer,
        momentum=cfg.momentum,
        fused=cfg.fused and device.type == "cuda",
    )
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, warmup, cfg.min_lr_ratio)
    )
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = getattr(torch, cfg.amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    # --- resume --------------------------------------------------------------------------------
    step, resumed_from = 0, None
    identity = run_identity(asdict(cfg), record, seed, dataset, total)
    ckpt = load_checkpoint(ckpt_path, set_aside=ctx.main)
    stale = None if ckpt is None else stale_fields(ckpt.get("identity"), identity)
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
        restore_rng(ckpt["rng"], device)
        step = resumed_from = int(ckpt["step"])
        log.info("resumed from %s at step %d/%d", ckpt_path, step, total)
    note_checkpoint(ckpt_path if ctx.main else None, resumed_from)  # named by a Ctrl-C's line
    if ctx.main:
        truncate_log(log_path, step)
    set_tf32(device, cfg.tf32)
    step_loss = compile_step(_step_fn(task, ctx, device), device, cfg.compile)

    writer = CheckpointWriter(cfg.checkpoint_async)

    def checkpoint(steplog: StepLog, *, wait: bool = False) -> None:
        if ctx.main:
            writer.save(
                ckpt_path,
                wait=wait,
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
        steplog.checkpoint_step = step  # named by the error of a later non-finite loss

    faults = StepFaults.from_env()  # only tests set them (robustkd.engine.faults)
    interactive = sys.stderr.isatty()
    last: dict[str, float] = {}
    t0, seen = time.perf_counter(), 0
    t_mark, step_mark = t0, step  # the last progress line, for the ETA

    # --- loop ----------------------------------------------------------------------------------
    model.train()
    log_target = log_path if ctx.main else os.devnull
    # One loader for the run: its workers persist across epochs; the epoch travels with each
    # index to them, so the batches are those of a single process. They start (at the first
    # pass) under the guard, ignore preemption signals, and stop when the loop ends, however.
    sampler = EpochBatches()
    # views.decode: device on CUDA: the workers pass JPEG bytes and boxes, decoded on the GPU.
    on_device = device_decode(dataset, device)
    loader = epoch_loader(
        EncodedTrainSet(dataset) if on_device else dataset,
        sampler,
        cfg.workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_encoded if on_device else None,
    )
    with (
        open(log_target, "a") as log_file,
        PreemptionGuard() as preemption,
        closing_loader(loader),
        writer,  # waits for the checkpoint in flight
    ):
        # Loss components stay on the device until a boundary (progress line, checkpoint,
        # preemption, end): no host synchronisation per step.
        steplog = StepLog(log_file, lambda v: reduce_mean(v, ctx), ckpt_path, resumed_from)

        def settle() -> None:  # before an injected kill or stop: the log and checkpoint on disk
            log_file.flush()
            writer.wait()

        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set(
                epoch,
                [
                    b[ctx.rank * local : (ctx.rank + 1) * local]
                    for b in epoch_batches(len(dataset), cfg.batch_size, seed, epoch)[offset:]
                ],
            )
            for batch in loader:
                faults.before_step(step, settle)
                if preempted(preemption, ctx):
                    steplog.flush()
                    checkpoint(steplog, wait=True)  # on disk before the job stops
                    barrier()  # rank 0's checkpoint is on disk before any rank exits
                    name = signal.Signals(preemption.signum or signal.SIGTERM).name
                    raise Preempted(
                        f"{name} received: checkpoint of step {step} written to {ckpt_path}; "
                        "rerun the job to resume"
                    )
                # uint8 crosses to the device (a quarter of float32's bytes), becomes float there.
                if on_device:
                    images, labels = decode_batch(batch, dataset.view.size, device), batch.labels
                else:
                    images, labels = batch[0].to(device, non_blocking=True), batch[1]
                images = to_unit_float(images)
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
                faults.after_step(step)
                # In a terminal too: the line is rewritten in place, at the same boundaries
                # (a flush per step would copy each step's losses to the host).
                if step % cfg.log_every == 0 or step == total:
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
                    checkpoint(steplog)
            if step % steps_per_epoch == 0:
                last = steplog.flush()
                checkpoint(steplog)
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
