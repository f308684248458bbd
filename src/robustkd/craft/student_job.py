"""The CRAFT study's student job: train and evaluate one method's student for each seed.

One seed per job at paper scale; every seed in the miniature, where a process pays seconds of
imports and the steps take milliseconds (``jobs.seeds_per_job``). Each seed trains in its own
run folder with a checkpoint (exact resume), a JSON-lines log and ``provenance.json``, then is
evaluated: clean, every corruption and severity, alignment with the teacher, cost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robustkd.atomic import write_json_atomic
from robustkd.craft import training
from robustkd.craft.evaluate import pooled_stage_features, stage_alignment
from robustkd.craft.models import create_cifar_model
from robustkd.craft.tasks import create_task
from robustkd.craft.tasks.base import StudentTask
from robustkd.craft.teacher_job import load_teacher
from robustkd.engine.distributed import is_main
from robustkd.engine.jobsetup import holds_run_folders, seed_everything
from robustkd.engine.optim import TrainConfig
from robustkd.provenance import now_iso, run_wildcards

__all__ = ["student_job"]

log = logging.getLogger(__name__)


def _objective(method: str, craft: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(craft["objectives"].get(method, {}))
    if method == "craft":
        cfg["train_corruptions"] = list(craft["corruptions"]["craft_train"])
        cfg["train_severities"] = list(craft["corruptions"]["craft_train_severities"])
    return cfg


def _cost(task: StudentTask, summary: Mapping[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    images = summary["steps"] * cfg.batch_size  # training images over the whole run
    return {
        "teacher_forward_images": images * task.teacher_views,
        "teacher_views_per_image": task.teacher_views,
        "train_images": images,
        "train_seconds": summary["seconds"],
        "images_per_s": summary["images_per_s"],
        "resumed_from": summary["resumed_from"],
    }


@holds_run_folders(lambda job: [Path(out).parent for out in job["outputs"]])
def student_job(
    *,
    method: str,
    data_dir: str | os.PathLike[str],
    teacher_weights: str | os.PathLike[str],
    craft: Mapping[str, Any],
    seeds: Sequence[int],
    outputs: Sequence[str | os.PathLike[str]],
    eval_conditions: Sequence[str],
    cifar10c: Mapping[str, str | os.PathLike[str]],
    cifar10c_labels: str | os.PathLike[str],
    threads: int = 1,
    device: str = "auto",
    rule: str = "craft_student",
    wildcards: Mapping[str, Any] | None = None,
) -> None:
    """Train and evaluate one method's student for every seed.

    Seed ``s`` writes, beside ``outputs[i]`` (``student.pth``, the student network's state
    dict): ``metrics.json`` (every number of the evaluation, per-epoch training curves, NaN
    count, cost) and ``eval/{condition}.json`` for each of ``eval_conditions`` (``top1``).

    Args:
        method: ``erm``, ``logitkd``, ``attentionkd``, ``crd`` or ``craft``.
        data_dir: Prepared CIFAR-10.
        teacher_weights: The frozen teacher's weights.
        craft: The ``craft`` config section.
        seeds: One student per seed.
        outputs: ``student.pth`` of each seed (same order).
        eval_conditions: Names of the per-condition files (see ``layout.eval_conditions``).
        cifar10c: Corruption -> corrupted test file.
        cifar10c_labels: Their labels.
        threads: CPU threads.
        device: Device name or ``auto``.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
    """
    job = training.load_job_inputs(
        data_dir=data_dir,
        craft=craft,
        train=craft["student"]["train"],
        cifar10c=cifar10c,
        cifar10c_labels=cifar10c_labels,
        threads=threads,
        device=device,
    )
    dev, suite, normalize, cfg, images = job.device, job.suite, job.normalize, job.cfg, job.images
    teacher = load_teacher(craft["teacher"], teacher_weights, suite.n_classes).to(dev)
    objective = _objective(method, craft)
    evaluation = craft["evaluation"]
    batch = int(evaluation["batch_size"])
    # The teacher's side of the alignment is the same for every seed: compute it once.
    align_images = suite.alignment_images(int(evaluation["alignment_images"]))
    teacher_feats = {
        c: pooled_stage_features(teacher, normalize, x, batch_size=batch, device=dev)
        for c, x in align_images.items()
    }
    for seed, out in zip(seeds, outputs, strict=True):
        started, out = now_iso(), Path(out)
        seed_everything(seed)
        student = create_cifar_model(craft["student"]["model"], suite.n_classes)
        task = create_task(
            method, student, teacher, normalize, objective, train_labels=images.labels
        )
        record = {
            "method": method,
            "student": dict(craft["student"]),
            "teacher": dict(craft["teacher"]),
            "objective": objective,
            "views": dict(craft["views"]),
            "train": asdict(cfg),
        }
        summary = training.train_seed(task, job, seed=seed, run_dir=out.parent, record=record)
        if not is_main():
            continue  # data-parallel: rank 0 evaluates and writes
        # --- evaluation: accuracy suite, alignment, curves, cost ------------------------------
        t0 = time.perf_counter()
        metrics = suite.evaluate(student, normalize, batch, dev)
        student_feats = {
            c: pooled_stage_features(student, normalize, x, batch_size=batch, device=dev)
            for c, x in align_images.items()
        }
        curves, bad = training.read_training_log(out.parent / "log.jsonl")
        metrics.update(
            method=method,
            seed=seed,
            params=sum(p.numel() for p in student.parameters()),
            alignment=stage_alignment(teacher_feats, student_feats),
            curves=curves,
            nan_count=bad,
            cost={**_cost(task, summary, cfg), "eval_seconds": time.perf_counter() - t0},
            train=summary,
        )
        _write_eval_files(out.parent, metrics, eval_conditions)
        training.save_run(
            student,
            out,
            out.parent / "metrics.json",
            metrics,
            rule=rule,
            inputs=[
                Path(teacher_weights),
                Path(data_dir) / "manifest.csv",
                *map(Path, cifar10c.values()),
            ],
            outputs=[
                out,
                out.parent / "metrics.json",
                out.parent / "log.jsonl",
                *(out.parent / "eval" / f"{c}.json" for c in eval_conditions),
            ],
            record=record,
            seed=seed,
            started=started,
            device=dev,
            summary=summary,
            wildcards=run_wildcards(wildcards, seed),
        )
        log.info(
            "%s seed %d: clean %.2f%%, robust %.2f%%, held-out %.2f%% (%.1f s, %.0f img/s)",
            method,
            seed,
            metrics["clean"],
            metrics["robust_all"],
            metrics["robust_heldout"],
            summary["seconds"],
            summary["images_per_s"],
        )


def _write_eval_files(run_dir: Path, metrics: Mapping[str, Any], conditions: Sequence[str]) -> None:
    """``eval/{condition}.json`` with ``top1`` for each table condition."""
    values: dict[str, float | None] = {
        "clean": metrics["clean"],
        "robust_all": metrics["robust_all"],
        "robust_heldout": metrics["robust_heldout"],
        "robust_train": metrics["robust_train"],
        **metrics["per_corruption"],
        **{f"severity{s}": v for s, v in metrics["per_severity"].items()},
    }
    for cond in conditions:
        if values.get(cond) is None:
            raise ValueError(f"no evaluation result for condition {cond!r}")
        write_json_atomic(
            run_dir / "eval" / f"{cond}.json",
            {"top1": values[cond], "condition": cond, "n_test": metrics["n_test"]},
        )
