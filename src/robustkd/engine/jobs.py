"""The training stages as the workflow runs them: resolved config in, weights and metrics out.

A job trains the seeds it is given one after another in one process: one seed per job at paper
scale, every configured seed in the miniature (a process pays 3-5 s of imports before its
first step; the miniature's steps take milliseconds), as ``jobs.seeds_per_job`` says. Seed
``s`` has its own run folder with a checkpoint, a JSON-lines log, its outputs and
``provenance.json``, the same whichever way the seeds are grouped; a killed job resumes each
seed from its own checkpoint. A job holds all its run folders from its start to its end
(:func:`~robustkd.engine.jobsetup.holds_run_folders`): a second writer of one stops at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from robustkd.atomic import write_json_atomic
from robustkd.data.prepared import PreparedDataset
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.data import ImageSet, label_fraction_indices, load_image_set
from robustkd.engine.distill import distill_task
from robustkd.engine.distributed import context, is_main
from robustkd.engine.evaluate import evaluate_classifier
from robustkd.engine.finetune import Classifier, FinetuneTask
from robustkd.engine.inputs import eval_split, input_view, resolve_distortion
from robustkd.engine.jobsetup import (
    holds_run_folders,
    seed_everything,
    set_threads,
    write_run_provenance,
)
from robustkd.engine.loop import resolve_device, train
from robustkd.engine.optim import TrainConfig, stretch_epochs
from robustkd.labelfractions import fraction_batch, fraction_run_epochs
from robustkd.models.backbones import copy_student, create_backbone, freeze
from robustkd.provenance import now_iso, run_wildcards

__all__ = ["FinetuneRun", "distill_job", "finetune_job", "pretrain_job"]

log = logging.getLogger(__name__)


@holds_run_folders(lambda job: [Path(job["out_weights"]).parent])
def pretrain_job(
    *,
    backbone: Mapping[str, Any],
    pretrain: Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    views: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    out_weights: str | os.PathLike[str],
    seed: int,
    threads: int = 1,
    device: str = "auto",
    rule: str = "pretrain_backbone",
    wildcards: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain a backbone from scratch on clean images (the miniature's stand-in teacher).

    Trains a classifier on the train split, evaluates it on the clean val split, and saves the
    backbone's weights (no head) in the format :func:`create_backbone` loads from a file.

    Returns:
        The clean validation metrics (also written to ``metrics.json`` beside the weights);
        empty on data-parallel ranks other than 0.
    """
    started, dev = now_iso(), resolve_device(device)
    workers = set_threads(threads)
    out_weights = Path(out_weights)
    run_dir = out_weights.parent
    seed_everything(seed)
    model = create_backbone({**backbone, "weights": None})
    view, normalize = input_view(views, backbone)
    prepared = PreparedDataset(data_dir)
    train_set = load_image_set(
        prepared, "train", view, train=True, seed=seed, preload_size=views.get("preload_size")
    )
    val_set = load_image_set(
        prepared, eval_split(prepared), view, train=False, preload_size=views.get("preload_size")
    )
    clf = Classifier(model, len(prepared.classes))
    cfg = TrainConfig.from_config({**pretrain, "workers": workers})
    summary = train(
        FinetuneTask(clf, None, normalize.to(dev)),
        train_set,
        cfg,
        seed=seed,
        run_dir=run_dir,
        device=dev,
        record={"backbone": dict(backbone)},
    )
    if not is_main():
        return {}  # data-parallel: rank 0 evaluates and writes
    metrics = evaluate_classifier(
        clf,
        val_set,
        None,
        normalize.to(dev),
        repeats=1,
        seed=seed,
        batch_size=evaluation.get("batch_size", 256),
        device=dev,
        workers=workers,
        amp=bool(evaluation.get("amp", False)),
    )
    metrics.update(chance=100.0 / len(prepared.classes), train=summary)
    save_weights(out_weights, clf.backbone.cpu())
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_run_provenance(
        run_dir,
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv"],
        outputs=[out_weights, run_dir / "metrics.json"],
        wildcards=wildcards or {},
        config={"backbone": dict(backbone), "pretrain": dict(pretrain), "views": dict(views)},
        seed=seed,
        started=started,
        device=dev,
        extra={"train": summary},
    )
    log.info(
        "pretrained backbone: clean val top-1 %.2f%% (chance %.2f%%)",
        metrics["top1"],
        metrics["chance"],
    )
    return metrics


@holds_run_folders(lambda job: [Path(out).parent for out in job["outputs"]])
def distill_job(
    *,
    method: str,
    backbone: Mapping[str, Any],
    loss_weights: Mapping[str, Any],
    distortion: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    views: Mapping[str, Any],
    seeds: Sequence[int],
    outputs: Sequence[str | os.PathLike[str]],
    teachers: Sequence[str | os.PathLike[str]] | None = None,
    threads: int = 1,
    device: str = "auto",
    rule: str = "distill",
    wildcards: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Pretrain one student per seed: frozen teacher on clean crops, student on distorted ones.

    Args:
        method: ``ours``, ``global``, ``global-local``, ``global-attention`` (multi-level
            distillation of a ViT) or ``ci`` (Contrastive Inversion of a CLIP encoder).
        backbone: Teacher spec for :func:`create_backbone` (weights resolved).
        loss_weights: ``lambda_g``, ``lambda_l``, ``lambda_a``, ``tau`` (multi-level) or
            ``tau`` (CI).
        distortion: The distortion's config entry.
        train_cfg: :class:`TrainConfig` settings.
        data_dir: Prepared ImageNet-100.
        views: ``crop_scale``, ``preload_size``.
        seeds: One student per seed.
        outputs: ``student.pth`` path of each seed (same order).
        teachers: The teacher's weights file of each seed (same order): the pipeline's
            stand-in teachers, one per seed; None: every seed loads ``backbone``'s weights.
        threads: CPU threads for this job.
        device: ``auto``, ``cpu``, ``cuda``, ...
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
        inputs: Files hashed into the provenance (teacher weights, manifest); with
            ``teachers``, a seed's record hashes its own teacher instead of these.

    Raises:
        ValueError: ``teachers`` is not one file per seed.
    """
    if teachers is not None and len(teachers) != len(seeds):
        raise ValueError(f"{len(teachers)} teacher weights for {len(seeds)} seeds {list(seeds)}")
    dev = resolve_device(device)
    workers = set_threads(threads)
    prepared = PreparedDataset(data_dir)
    cfg = TrainConfig.from_config({**train_cfg, "workers": workers})
    dist = resolve_distortion(distortion)
    view, normalize = input_view(views, backbone)
    images = load_image_set(
        prepared, "train", view, train=True, preload_size=views.get("preload_size")
    )
    for i, (seed, out) in enumerate(zip(seeds, outputs, strict=True)):
        started, out = now_iso(), Path(out)
        seed_everything(seed)
        spec = dict(backbone) if teachers is None else {**backbone, "weights": str(teachers[i])}
        teacher = freeze(create_backbone(spec)).to(dev)
        student = copy_student(teacher)
        task = distill_task(method, teacher, student, dist, normalize.to(dev), loss_weights)
        record = {
            "method": method,
            "backbone": spec,
            "loss": dict(loss_weights),
            "distortion": dict(distortion),
            "train": asdict(cfg),
        }
        summary = train(
            task,
            images.derive(seed=seed),
            cfg,
            seed=seed,
            run_dir=out.parent,
            device=dev,
            record=record,
        )
        if not is_main():
            continue  # data-parallel: rank 0 writes
        save_weights(out, student.cpu())
        write_run_provenance(
            out.parent,
            rule=rule,
            inputs=[
                *(inputs if teachers is None else [teachers[i]]),
                Path(data_dir) / "manifest.csv",
            ],
            outputs=[out, out.parent / "log.jsonl"],
            wildcards=run_wildcards(wildcards, seed),
            config=record,
            seed=seed,
            started=started,
            device=dev,
            extra={"train": summary},
        )
        log.info(
            "seed %d: %s student %s in %.1f s (%.0f img/s)",
            seed,
            method,
            out,
            summary["seconds"],
            summary["images_per_s"],
        )


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning run of a job.

    Attributes:
        data_dir: Prepared dataset.
        fraction: Label fraction of its train split, in (0, 1].
        seed: Seed of the run (data order, augmentation, distortions, label subset).
        init: Initial backbone weights (a pretrained student), or None for the backbone's own.
        out: Where the classifier's weights go; ``metrics.json`` is written beside them.
        min_steps: Optimizer steps the run makes at least (Fig 3's
            ``experiments.fig3.min_steps``): a label fraction too small for them in the
            configured epochs trains for more
            (:func:`~robustkd.labelfractions.fraction_run_epochs`). 0: the configured epochs.
    """

    data_dir: str
    fraction: float
    seed: int
    init: str | None
    out: str
    min_steps: int = 0


@holds_run_folders(lambda job: [Path(run.out).parent for run in job["runs"]])
def finetune_job(
    *,
    backbone: Mapping[str, Any],
    runs: Sequence[FinetuneRun],
    distortion: Mapping[str, Any] | None,
    train_cfg: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    views: Mapping[str, Any],
    threads: int = 1,
    device: str = "auto",
    rule: str = "finetune",
    wildcards: Mapping[str, Any] | None = None,
) -> None:
    """Fully fine-tune and evaluate a classifier for each run, on distorted images.

    A run starts from its ``init`` weights (a distilled student) or, when None, from
    ``backbone``'s own weights (the supervised baseline). Training uses a stratified, nested
    label fraction of the train split under ``distortion``; evaluation applies the same
    distortion to the test (else val) split, ``evaluation.repeats`` times. Each dataset is
    decoded once per job.

    Args:
        backbone: Backbone spec; its ``weights`` are replaced by a run's ``init`` if given.
        runs: The runs (datasets x label fractions x seeds) of this job.
        distortion: The distortion's config entry (train and test); None for clean images.
        train_cfg: :class:`TrainConfig` settings.
        evaluation: ``repeats``, ``batch_size``, ``amp``.
        views: ``crop_scale``, ``preload_size``.
        threads: CPU threads.
        device: Device name or ``auto``.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
    """
    dev = resolve_device(device)
    workers = set_threads(threads)
    cfg = TrainConfig.from_config({**train_cfg, "workers": workers})
    dist = resolve_distortion(distortion)
    view, normalize = input_view(views, backbone)
    normalize = normalize.to(dev)
    loaded: dict[str, tuple[PreparedDataset, ImageSet, ImageSet]] = {}
    for run in runs:
        if run.data_dir not in loaded:
            prepared = PreparedDataset(run.data_dir)
            pre = views.get("preload_size")
            loaded[run.data_dir] = (
                prepared,
                load_image_set(prepared, "train", view, train=True, preload_size=pre),
                load_image_set(prepared, eval_split(prepared), view, train=False, preload_size=pre),
            )
        prepared, images, test_set = loaded[run.data_dir]
        started, out = now_iso(), Path(run.out)
        seed_everything(run.seed)
        spec = dict(backbone) if run.init is None else {**backbone, "weights": str(run.init)}
        clf = Classifier(create_backbone(spec), len(prepared.classes))
        keep = label_fraction_indices(prepared.labels("train"), run.fraction, run.seed)
        train_set = images.derive(seed=run.seed, indices=keep)
        # A small label fraction may hold fewer images than a batch (the batch shrinks) and
        # make fewer than run.min_steps steps in the configured epochs (it makes more epochs).
        world, n_train = context().world, len(train_set)
        run_cfg = stretch_epochs(
            replace(cfg, batch_size=fraction_batch(n_train, cfg.batch_size, world)),
            fraction_run_epochs(n_train, cfg.batch_size, cfg.epochs, run.min_steps, world),
        )
        record = {
            "backbone": spec,
            "dataset": str(run.data_dir),
            "distortion": dict(distortion or {}),
            "fraction": run.fraction,
            "train": asdict(run_cfg),
            "evaluation": dict(evaluation),
        }
        summary = train(
            FinetuneTask(clf, dist, normalize),
            train_set,
            run_cfg,
            seed=run.seed,
            run_dir=out.parent,
            device=dev,
            record=record,
        )
        if not is_main():
            continue  # data-parallel: rank 0 evaluates and writes
        metrics = evaluate_classifier(
            clf,
            test_set,
            dist,
            normalize,
            repeats=int(evaluation["repeats"]),
            seed=run.seed,
            batch_size=int(evaluation["batch_size"]),
            device=dev,
            workers=workers,
            amp=bool(evaluation.get("amp", False)),
        )
        metrics.update(
            split=eval_split(prepared),
            n_train=len(train_set),
            fraction=run.fraction,
            # The share of labels kept, which Fig 3 plots (robustkd.labelfractions).
            fraction_used=len(train_set) / len(images),
            n_train_split=len(images),
            seed=run.seed,
            chance=100.0 / len(prepared.classes),
        )
        save_weights(out, clf.cpu())
        write_json_atomic(out.parent / "metrics.json", metrics)
        start = run.init or (spec["weights"] if spec.get("weights") not in (None, "hub") else None)
        inputs = [Path(run.data_dir) / "manifest.csv"] + ([start] if start else [])
        write_run_provenance(
            out.parent,
            rule=rule,
            inputs=inputs,
            outputs=[out, out.parent / "metrics.json"],
            wildcards=run_wildcards(wildcards, run.seed),
            config=record,
            seed=run.seed,
            started=started,
            device=dev,
            extra={"train": summary},
        )
        log.info(
            "%s seed %d fraction %g: top-1 %.2f%% +- %.2f over %d repeats",
            out.parent,
            run.seed,
            run.fraction,
            metrics["top1"],
            metrics["top1_std"],
            metrics["repeats"],
        )
