"""What the CRAFT study's jobs share: process setup, the training images, one seed's run.

- :func:`keep_freed_memory`: the process (seeding and threads: :mod:`robustkd.engine.jobsetup`).
- :func:`cifar_normalize` and :func:`train_images`: what every network sees in training.
- :func:`load_job_inputs`: both, the test sets and the loop's settings, loaded once per job.
- :func:`train_seed`: one seed's run of the shared loop :func:`robustkd.engine.loop.train`
  (checkpoint with exact resume, JSON-lines log), on that seed's augmentation stream.
- :func:`save_run`: its weights, metrics and ``provenance.json``.
- :func:`read_training_log`: the per-epoch curves of that log.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustkd.atomic import write_json_atomic
from robustkd.craft.evaluate import TestSuite
from robustkd.craft.models import CIFAR_MEAN, CIFAR_STD
from robustkd.craft.tasks.base import IndexedImages, StudentTask
from robustkd.data.prepared import PreparedDataset
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.data import ImageSet, ViewConfig, load_image_set
from robustkd.engine.distill import Normalize
from robustkd.engine.jobsetup import set_threads, write_run_provenance
from robustkd.engine.loop import resolve_device, train
from robustkd.engine.optim import TrainConfig
from robustkd.readback import UnreadableFileError

__all__ = [
    "JobInputs",
    "cifar_normalize",
    "keep_freed_memory",
    "load_job_inputs",
    "read_training_log",
    "save_run",
    "train_images",
    "train_seed",
]


def keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed memory instead of returning it to the OS at once.

    With its default, dynamic thresholds every activation of a few hundred kB to a few MB is
    mmap-ed and unmapped again, step after step: the page faults cost these small CPU jobs
    10-15 % of their time (measured: a student job's system time fell from 1.6 s to 0.1 s).
    A no-op where glibc is not the allocator.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: mmap only allocations above 32 MB
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: keep up to 128 MB of free heap
    except (OSError, AttributeError):
        pass


def cifar_normalize() -> Normalize:
    """CIFAR-10's per-channel pixel normalisation (a module: move it to the device)."""
    return Normalize(CIFAR_MEAN, CIFAR_STD)


def train_images(prepared: PreparedDataset, views: Mapping[str, Any]) -> ImageSet:
    """The training split with the random crop and flip of ``views`` (``craft.views``)."""
    view = ViewConfig(
        size=int(views["size"]),
        crop_scale=tuple(views["crop_scale"]),
        crop_ratio=tuple(views.get("crop_ratio", (3 / 4, 4 / 3))),
        hflip=bool(views.get("hflip", True)),
    )
    # Decoded once (CIFAR is small); the random crop + flip stream is seeded per run.
    return load_image_set(prepared, "train", view, train=True, preload_size=int(views["size"]))


@dataclass
class JobInputs:
    """What a training job of the study reads once, before its seeds.

    Attributes:
        device: Where it trains.
        suite: Its clean and corrupted test sets.
        normalize: The pixel normalisation (on ``device``).
        cfg: The loop's settings, with the data-loader workers of the job's threads.
        images: The training images.
    """

    device: torch.device
    suite: TestSuite
    normalize: Normalize
    cfg: TrainConfig
    images: ImageSet


def load_job_inputs(
    *,
    data_dir: str | os.PathLike[str],
    craft: Mapping[str, Any],
    train: Mapping[str, Any],
    cifar10c: Mapping[str, str | os.PathLike[str]],
    cifar10c_labels: str | os.PathLike[str],
    threads: int,
    device: str,
) -> JobInputs:
    """Set the process up for a training job and load what it reads (once, before its seeds).

    Args:
        data_dir: Prepared CIFAR-10.
        craft: The ``craft`` config section (views, corruptions).
        train: The ``train`` section of the network trained (teacher or student).
        cifar10c: Corruption -> corrupted test file.
        cifar10c_labels: Their labels.
        threads: CPU threads.
        device: Device name or ``auto``.

    Returns:
        The inputs.
    """
    keep_freed_memory()
    dev = resolve_device(device)
    workers = set_threads(threads)
    prepared = PreparedDataset(data_dir)
    suite = TestSuite(prepared, cifar10c, cifar10c_labels, craft["corruptions"])
    normalize = cifar_normalize().to(dev)
    cfg = TrainConfig.from_config({**train, "workers": workers})
    images = train_images(prepared, craft["views"])
    return JobInputs(dev, suite, normalize, cfg, images)


def train_seed(
    task: StudentTask, job: JobInputs, *, seed: int, run_dir: Path, record: Mapping[str, Any]
) -> dict[str, Any]:
    """Train ``task`` with the shared loop on seed ``seed``'s stream of the job's images.

    Args:
        task: The method's task (its ``.model`` is trained and checkpointed).
        job: The job's training images, loop settings and device.
        seed: The run's seed (augmentation stream, loop generators).
        run_dir: Folder of the checkpoint, ``log.jsonl`` and the loop's records.
        record: The resolved config recorded with the run.

    Returns:
        The loop's summary (steps, seconds, images per second, resumed from).
    """
    return train(
        task,
        IndexedImages(job.images.derive(seed=seed)),
        job.cfg,
        seed=seed,
        run_dir=run_dir,
        device=job.device,
        record=record,
    )


def save_run(
    model: nn.Module,
    weights: Path,
    metrics_file: Path,
    metrics: Mapping[str, Any],
    *,
    rule: str,
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    record: Mapping[str, Any],
    seed: int,
    started: str,
    device: torch.device,
    summary: Mapping[str, Any],
    wildcards: Mapping[str, Any] | None = None,
) -> None:
    """Save a trained run: the network's weights, its metrics, then ``provenance.json`` beside.

    Args:
        model: The trained network (moved to the CPU to be saved).
        weights: Its state dict's file.
        metrics_file: The metrics' JSON file.
        metrics: The evaluation.
        rule: Rule name for the provenance.
        inputs: Files the run read.
        outputs: Files the run wrote.
        record: The resolved config of the run.
        seed: Its seed.
        started: When it started (ISO time).
        device: Where it trained.
        summary: The loop's summary (:func:`train_seed`).
        wildcards: Wildcards for the provenance.
    """
    save_weights(weights, model.cpu())
    write_json_atomic(metrics_file, metrics)
    write_run_provenance(
        weights.parent,
        rule=rule,
        inputs=inputs,
        outputs=outputs,
        wildcards=wildcards,
        config=record,
        seed=seed,
        started=started,
        device=device,
        extra={"train": summary},
    )


def read_training_log(path: str | os.PathLike[str]) -> tuple[dict[str, list[float]], int]:
    """Per-epoch means of every logged component, and the count of non-finite values.

    The shared loop raises :class:`~robustkd.engine.checkpoint.NonFiniteError` before it logs a
    non-finite step, so a completed run logs none: the count is 0 unless the log was edited.

    Returns:
        ``({component: [mean of epoch 0, 1, ...]}, non_finite_count)``.
    """
    by_epoch: dict[int, dict[str, list[float]]] = {}
    bad = 0
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line:
            continue
        try:
            row = json.loads(line)
            epoch = int(row.pop("epoch"))
            row.pop("step")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnreadableFileError(
                path,
                f"{path}, line {lineno}: not a training log record ({exc!r})",
                "delete the run's folder and rerun the job",
            ) from exc
        for k, v in row.items():
            v = float(v)
            if not math.isfinite(v):
                bad += 1
                continue
            by_epoch.setdefault(epoch, {}).setdefault(k, []).append(v)
    keys = sorted({k for d in by_epoch.values() for k in d})
    curves = {
        k: [
            float(np.mean(by_epoch[e][k])) if k in by_epoch[e] else math.nan
            for e in sorted(by_epoch)
        ]
        for k in keys
    }
    return curves, bad
