"""The CRAFT study's teacher job: train the teacher on clean images, evaluate it, save it.

The workflow's ``craft_teacher`` rule runs :func:`teacher_job` (through
:func:`robustkd.engine.distributed.run_job`, which launches torchrun for several GPUs); the
student jobs load its result with :func:`load_teacher`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robustkd.craft import training
from robustkd.craft.models import CifarResNet, create_cifar_model, freeze_teacher
from robustkd.craft.tasks.baselines import ErmTask
from robustkd.engine.distributed import is_main
from robustkd.engine.jobsetup import holds_run_folders, seed_everything
from robustkd.provenance import now_iso
from robustkd.readback import load_weights

__all__ = ["load_teacher", "teacher_job"]

log = logging.getLogger(__name__)


@holds_run_folders(lambda job: [Path(job["out_weights"]).parent])
def teacher_job(
    *,
    data_dir: str | os.PathLike[str],
    craft: Mapping[str, Any],
    cifar10c: Mapping[str, str | os.PathLike[str]],
    cifar10c_labels: str | os.PathLike[str],
    out_weights: str | os.PathLike[str],
    out_metrics: str | os.PathLike[str],
    threads: int = 1,
    device: str = "auto",
    rule: str = "craft_teacher",
) -> dict[str, Any]:
    """Train the teacher with cross-entropy on clean images, evaluate it, save its weights.

    Args:
        data_dir: Prepared CIFAR-10.
        craft: The ``craft`` config section.
        cifar10c: Corruption -> corrupted test file.
        cifar10c_labels: Their labels.
        out_weights: ``model.pth`` (the :class:`CifarResNet` state dict).
        out_metrics: ``metrics.json`` (clean, corrupted, per corruption and severity).
        threads: CPU threads.
        device: ``auto``, ``cpu``, ``cuda``...
        rule: Rule name for the provenance.

    Returns:
        The metrics.
    """
    started, spec = now_iso(), craft["teacher"]
    seed = int(spec.get("seed", 0))
    job = training.load_job_inputs(
        data_dir=data_dir,
        craft=craft,
        train=spec["train"],
        cifar10c=cifar10c,
        cifar10c_labels=cifar10c_labels,
        threads=threads,
        device=device,
    )
    dev, suite, normalize, cfg = job.device, job.suite, job.normalize, job.cfg
    seed_everything(seed)
    model = create_cifar_model(spec["model"], suite.n_classes)
    out_weights = Path(out_weights)
    record = {"teacher": dict(spec), "views": dict(craft["views"]), "train": asdict(cfg)}
    task = ErmTask(model, None, normalize)
    summary = training.train_seed(task, job, seed=seed, run_dir=out_weights.parent, record=record)
    if not is_main():
        return {}  # data-parallel: rank 0 evaluates and writes
    metrics = suite.evaluate(model, normalize, int(craft["evaluation"]["batch_size"]), dev)
    curves, bad = training.read_training_log(out_weights.parent / "log.jsonl")
    metrics.update(
        seed=seed,
        params=sum(p.numel() for p in model.parameters()),
        model=dict(spec["model"]),
        train=summary,
        curves=curves,
        nan_count=bad,
    )
    training.save_run(
        model,
        out_weights,
        Path(out_metrics),
        metrics,
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv", *map(Path, cifar10c.values())],
        outputs=[out_weights, Path(out_metrics)],
        record=record,
        seed=seed,
        started=started,
        device=dev,
        summary=summary,
    )
    log.info(
        "teacher: clean %.2f%%, corrupted %.2f%% (held-out %.2f%%)",
        metrics["clean"],
        metrics["robust_all"],
        metrics["robust_heldout"],
    )
    return metrics


def load_teacher(
    spec: Mapping[str, Any], weights: str | os.PathLike[str], n_classes: int
) -> CifarResNet:
    """Build the teacher from its config entry and weights file, frozen."""
    model = create_cifar_model(spec["model"], n_classes)
    load_weights(model, weights, "teacher weights")
    return freeze_teacher(model)
