"""The training stages as the workflow runs them: resolved config in, weights and metrics out.

Each job trains every configured seed in one process (a process pays 3-5 s of imports before
its first step; the miniature's steps take milliseconds). Seed ``s`` has its own run folder
with a checkpoint, a JSON-lines log, its outputs and ``provenance.json``; a killed job resumes
each seed from its own checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from robustkd.atomic import write_json_atomic
from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import Distortion, create_distortion
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.data import ViewConfig, label_fraction_indices, load_image_set
from robustkd.engine.distill import DistillTask, Normalize
from robustkd.engine.evaluate import evaluate_classifier
from robustkd.engine.finetune import Classifier, FinetuneTask
from robustkd.engine.loop import TrainConfig, resolve_device, train
from robustkd.losses.multilevel import create_multilevel_loss, needs_attention
from robustkd.models.backbones import (
    backbone_input_config,
    copy_student,
    create_backbone,
    freeze,
)
from robustkd.provenance import now_iso, write_provenance

__all__ = ["distill_job", "finetune_job", "pretrain_job", "resolve_distortion"]

log = logging.getLogger(__name__)

# Keys of a distortion's config entry that describe it rather than parameterise it.
_DISTORTION_META = ("stands_for",)


def resolve_distortion(spec: Mapping[str, Any] | None) -> Distortion | None:
    """Build a distortion from its config entry (metadata keys dropped); None for clean."""
    if spec is None:
        return None
    return create_distortion({k: v for k, v in spec.items() if k not in _DISTORTION_META})


def _view(views: Mapping[str, Any], backbone: Mapping[str, Any]) -> tuple[ViewConfig, Normalize]:
    inp = backbone_input_config(backbone)
    size = int(inp["input_size"][-1])
    view = ViewConfig(size=size, crop_scale=tuple(views.get("crop_scale", (0.08, 1.0))))
    return view, Normalize(tuple(inp["mean"]), tuple(inp["std"]))


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _threads(threads: int) -> int:
    """Use ``threads`` for intra-op parallelism; return the data-loader worker count."""
    torch.set_num_threads(max(1, threads))
    return 0 if threads <= 2 else threads - 1


def _provenance(
    run_dir: Path,
    *,
    rule: str,
    inputs: Sequence[str | os.PathLike[str]],
    outputs: Sequence[Path],
    wildcards: Mapping[str, Any],
    config: Mapping[str, Any],
    seed: int | None,
    started: str,
    device: torch.device,
    extra: Mapping[str, Any],
) -> None:
    write_provenance(
        run_dir / "provenance.json",
        rule=rule,
        inputs=inputs,
        outputs=outputs,
        wildcards=wildcards,
        config=config,
        seed=seed,
        started=started,
        device=str(device),
        extra=extra,
    )


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
        The clean validation metrics (also written to ``metrics.json`` beside the weights).
    """
    started, dev = now_iso(), resolve_device(device)
    workers = _threads(threads)
    out_weights = Path(out_weights)
    run_dir = out_weights.parent
    _seed_everything(seed)
    model = create_backbone({**backbone, "weights": None})
    view, normalize = _view(views, backbone)
    prepared = PreparedDataset(data_dir)
    train_set = load_image_set(
        prepared, "train", view, train=True, seed=seed, preload_size=views.get("preload_size")
    )
    val_set = load_image_set(
        prepared, _eval_split(prepared), view, train=False, preload_size=views.get("preload_size")
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
    )
    metrics.update(chance=100.0 / len(prepared.classes), train=summary)
    save_weights(out_weights, clf.backbone.cpu())
    write_json_atomic(run_dir / "metrics.json", metrics)
    _provenance(
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


def _eval_split(prepared: PreparedDataset) -> str:
    for name in ("val", "test"):
        if name in prepared.splits:
            return name
    raise ValueError(f"{prepared.root}: no val or test split (have {prepared.splits})")


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
    threads: int = 1,
    device: str = "auto",
    rule: str = "distill",
    wildcards: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Distil one student per seed: frozen teacher on clean crops, student on distorted ones.

    Args:
        method: Loss variant (``ours``, ``global``, ``global-local``, ``global-attention``).
        backbone: Teacher spec for :func:`create_backbone` (weights resolved).
        loss_weights: ``lambda_g``, ``lambda_l``, ``lambda_a``, ``tau``.
        distortion: The distortion's config entry.
        train_cfg: :class:`TrainConfig` settings.
        data_dir: Prepared ImageNet-100.
        views: ``crop_scale``, ``preload_size``.
        seeds: One student per seed.
        outputs: ``student.pth`` path of each seed (same order).
        threads: CPU threads for this job.
        device: ``auto``, ``cpu``, ``cuda``, ...
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
        inputs: Files hashed into the provenance (teacher weights, manifest).
    """
    dev = resolve_device(device)
    workers = _threads(threads)
    prepared = PreparedDataset(data_dir)
    cfg = TrainConfig.from_config({**train_cfg, "workers": workers})
    dist = resolve_distortion(distortion)
    loss_fn = create_multilevel_loss(method, loss_weights)
    view, normalize = _view(views, backbone)
    images = load_image_set(
        prepared, "train", view, train=True, preload_size=views.get("preload_size")
    )
    for seed, out in zip(seeds, outputs, strict=True):
        started, out = now_iso(), Path(out)
        _seed_everything(seed)
        teacher = freeze(create_backbone(backbone))
        student = copy_student(teacher)
        train_set = images.derive(seed=seed)
        task = DistillTask(
            teacher.to(dev),
            student,
            loss_fn,
            dist,
            normalize.to(dev),
            with_attention=needs_attention(method),
        )
        record = {
            "method": method,
            "backbone": dict(backbone),
            "loss": dict(loss_weights),
            "distortion": dict(distortion),
            "train": asdict(cfg),
        }
        summary = train(
            task, train_set, cfg, seed=seed, run_dir=out.parent, device=dev, record=record
        )
        save_weights(out, student.cpu())
        _provenance(
            out.parent,
            rule=rule,
            inputs=[*inputs, Path(data_dir) / "manifest.csv"],
            outputs=[out, out.parent / "log.jsonl"],
            wildcards=wildcards or {},
            config=record,
            seed=seed,
            started=started,
            device=dev,
            extra={"train": summary},
        )
        log.info(
            "seed %d: distilled %s in %.1f s (%.0f img/s)",
            seed,
            out,
            summary["seconds"],
            summary["images_per_s"],
        )


def finetune_job(
    *,
    backbone: Mapping[str, Any],
    init_weights: Sequence[str | os.PathLike[str] | None],
    distortion: Mapping[str, Any] | None,
    train_cfg: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    views: Mapping[str, Any],
    fraction: float,
    seeds: Sequence[int],
    outputs: Sequence[str | os.PathLike[str]],
    threads: int = 1,
    device: str = "auto",
    rule: str = "finetune",
    wildcards: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Fully fine-tune a classifier per seed on distorted images, then evaluate it.

    Seed ``s`` starts from ``init_weights[s]`` (a distilled student) or, when that is None,
    from ``backbone``'s own weights (the supervised baseline). Training uses a stratified,
    nested label fraction of the train split; evaluation applies the same distortion to the
    val (or test) split, ``evaluation.repeats`` times.

    Args:
        backbone: Backbone spec; its ``weights`` are replaced by ``init_weights[i]`` if given.
        init_weights: Per-seed initial weights, or None entries for the backbone's own.
        distortion: The distortion's config entry (train and test).
        train_cfg: :class:`TrainConfig` settings.
        evaluation: ``repeats``, ``batch_size``.
        data_dir: Prepared dataset.
        views: ``crop_scale``, ``preload_size``.
        fraction: Label fraction in (0, 1].
        seeds: Seeds, one model each.
        outputs: ``model.pth`` path of each seed (``metrics.json`` is written beside it).
        threads: CPU threads.
        device: Device name or ``auto``.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
        inputs: Files hashed into the provenance.
    """
    dev = resolve_device(device)
    workers = _threads(threads)
    prepared = PreparedDataset(data_dir)
    cfg = TrainConfig.from_config({**train_cfg, "workers": workers})
    dist = resolve_distortion(distortion)
    split = _eval_split(prepared)
    view, normalize = _view(views, backbone)
    images = load_image_set(
        prepared, "train", view, train=True, preload_size=views.get("preload_size")
    )
    val_set = load_image_set(
        prepared, split, view, train=False, preload_size=views.get("preload_size")
    )
    for seed, init, out in zip(seeds, init_weights, outputs, strict=True):
        started, out = now_iso(), Path(out)
        _seed_everything(seed)
        spec = dict(backbone) if init is None else {**backbone, "weights": str(init)}
        clf = Classifier(create_backbone(spec), len(prepared.classes))
        keep = label_fraction_indices(prepared.labels("train"), fraction, seed)
        train_set = images.derive(seed=seed, indices=keep)
        record = {
            "backbone": spec,
            "distortion": dict(distortion or {}),
            "fraction": fraction,
            "train": asdict(cfg),
            "evaluation": dict(evaluation),
        }
        batch = min(cfg.batch_size, len(train_set))
        run_cfg = TrainConfig(**{**asdict(cfg), "batch_size": batch})
        summary = train(
            FinetuneTask(clf, dist, normalize.to(dev)),
            train_set,
            run_cfg,
            seed=seed,
            run_dir=out.parent,
            device=dev,
            record=record,
        )
        metrics = evaluate_classifier(
            clf,
            val_set,
            dist,
            normalize.to(dev),
            repeats=int(evaluation["repeats"]),
            seed=seed,
            batch_size=int(evaluation["batch_size"]),
            device=dev,
            workers=workers,
        )
        metrics.update(
            split=split,
            n_train=len(train_set),
            fraction=fraction,
            seed=seed,
            chance=100.0 / len(prepared.classes),
        )
        save_weights(out, clf.cpu())
        write_json_atomic(out.parent / "metrics.json", metrics)
        _provenance(
            out.parent,
            rule=rule,
            inputs=[*inputs, Path(data_dir) / "manifest.csv"],
            outputs=[out, out.parent / "metrics.json"],
            wildcards=wildcards or {},
            config=record,
            seed=seed,
            started=started,
            device=dev,
            extra={"train": summary},
        )
        log.info(
            "seed %d: %s top-1 %.2f%% +- %.2f over %d repeats",
            seed,
            out.parent,
            metrics["top1"],
            metrics["top1_std"],
            metrics["repeats"],
        )


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``metrics.json``."""
    return json.loads(Path(path).read_text())
