"""The CRAFT study's jobs as the workflow runs them: resolved config in, files out.

- :func:`corrupt_testset_job`: the CIFAR-10-C style copy of the test set (uint8 ``.npy`` per
  corruption, severities 1-5 stacked, as the released benchmark).
- :func:`teacher_job`: train the teacher on clean images, evaluate it, freeze it on disk.
- :func:`student_job`: train one method's student for each seed it is given, in one process
  (one seed per job at paper scale; every seed in the miniature, where a process pays seconds
  of imports and the steps take milliseconds: ``jobs.seeds_per_job``), each seed in its own run
  folder with a checkpoint (exact resume), a JSON-lines log and ``provenance.json``; then
  evaluate it (clean, every corruption and severity, alignment with the teacher, cost).

Every training run goes through the shared loop :func:`robustkd.engine.loop.train`.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import random
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustkd.atomic import write_json_atomic
from robustkd.craft.corruptions import create_corruption, to_uint8
from robustkd.craft.evaluate import (
    ArrayImages,
    accuracy_suite,
    load_corrupted,
    pooled_stage_features,
    stage_alignment,
    summarize_accuracy,
)
from robustkd.craft.models import (
    CIFAR_MEAN,
    CIFAR_STD,
    CifarResNet,
    create_cifar_model,
    freeze_teacher,
)
from robustkd.craft.tasks import ErmTask, IndexedImages, StudentTask, create_task
from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import seeded_generator
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.data import ImageSet, ViewConfig, load_image_set
from robustkd.engine.distill import Normalize
from robustkd.engine.distributed import is_main
from robustkd.engine.loop import TrainConfig, resolve_device, train
from robustkd.provenance import now_iso, run_wildcards, write_provenance
from robustkd.readback import UnreadableFileError, load_array, load_weights

__all__ = [
    "corrupt_testset_job",
    "corruption_key",
    "keep_freed_memory",
    "read_training_log",
    "student_job",
    "teacher_job",
]

log = logging.getLogger(__name__)


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def corruption_key(name: str) -> int:
    """A stable integer of a corruption's name (a key of its random streams)."""
    return zlib.crc32(name.encode())


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------
# The corrupted test set
# ----------------------------------------------------------------------------------------------


def corrupt_testset_job(
    *,
    data_dir: str | os.PathLike[str],
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    outputs: Mapping[str, str | os.PathLike[str]],
    labels_out: str | os.PathLike[str],
    chunk: int = 1000,
    threads: int = 1,
    rule: str = "craft_corrupt_testset",
) -> None:
    """Write the corrupted copy of the prepared test split, one uint8 file per corruption.

    File ``outputs[c]`` holds the N test images corrupted at severity 1, then 2, ... (shape
    (N * S, H, W, 3)), truncated to bytes as the benchmark does; ``labels_out`` the labels
    repeated per severity. Chunk ``k`` of severity ``s`` of corruption ``c`` draws from
    ``seeded_generator(seed, key(c), s, k)``: the set is a function of the seed.
    """
    keep_freed_memory()
    torch.set_num_threads(max(1, threads))
    started = now_iso()
    prepared = PreparedDataset(data_dir)
    images, labels = prepared.load_split("test")  # (N, H, W, 3) uint8, (N,)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    for name in corruptions:
        t0 = time.perf_counter()
        parts = []
        for s in severities:
            op = create_corruption(name, int(s))
            for k, start in enumerate(range(0, len(x), chunk)):
                g = seeded_generator("cpu", seed, corruption_key(name), int(s), k)
                parts.append(to_uint8(op(x[start : start + chunk], g)))
        _save_npy_atomic(Path(outputs[name]), np.concatenate(parts))
        log.info(
            "%s: %d images in %.2f s", name, len(x) * len(severities), time.perf_counter() - t0
        )
    _save_npy_atomic(Path(labels_out), np.tile(labels, len(severities)).astype(np.uint8))
    out_dir = Path(labels_out).parent
    write_provenance(
        out_dir / "provenance.json",
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv", *Path(data_dir).glob("arrays/test*")],
        outputs=[*map(Path, outputs.values()), Path(labels_out)],
        config={"corruptions": list(corruptions), "severities": list(severities), "seed": seed},
        seed=seed,
        started=started,
    )


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------


def _workers(threads: int) -> int:
    """Use ``threads`` for intra-op parallelism; return the data-loader worker count."""
    torch.set_num_threads(max(1, threads))
    return 0 if threads <= 2 else threads - 1


def _normalize() -> Normalize:
    return Normalize(CIFAR_MEAN, CIFAR_STD)


def _train_images(prepared: PreparedDataset, views: Mapping[str, Any]) -> ImageSet:
    view = ViewConfig(
        size=int(views["size"]),
        crop_scale=tuple(views["crop_scale"]),
        crop_ratio=tuple(views.get("crop_ratio", (3 / 4, 4 / 3))),
        hflip=bool(views.get("hflip", True)),
    )
    # Decoded once (CIFAR is small); the random crop + flip stream is seeded per run.
    return load_image_set(prepared, "train", view, train=True, preload_size=int(views["size"]))


class _TestSuite:
    """The clean and corrupted test sets, loaded once per job."""

    def __init__(
        self,
        prepared: PreparedDataset,
        cifar10c: Mapping[str, str | os.PathLike[str]],
        cifar10c_labels: str | os.PathLike[str],
        corruptions: Mapping[str, Any],
    ) -> None:
        images, labels = prepared.load_split("test")
        stored = load_array(cifar10c_labels, "CIFAR-10-C labels")
        severities = [int(s) for s in corruptions["severities"]]
        if not np.array_equal(stored, np.tile(labels, len(severities))):
            raise ValueError(f"{cifar10c_labels}: labels differ from the prepared test split")
        self.clean = ArrayImages(images, labels)
        self.corrupted = load_corrupted(cifar10c, labels, severities)
        self.train = list(corruptions["craft_train"])
        self.heldout = [c for c in corruptions["evaluate"] if c not in self.train]
        self.n_classes = len(prepared.classes)

    def alignment_images(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` test images, clean and under every (corruption, severity)."""
        out = {"clean": self.clean.tensor(n)}
        for (name, s), images in self.corrupted.items():
            out[f"{name}-{s}"] = images.tensor(n)
        return out

    def evaluate(
        self, model: CifarResNet, normalize: Normalize, batch_size: int, device: torch.device
    ) -> dict[str, Any]:
        acc = accuracy_suite(
            model, normalize, self.clean, self.corrupted, batch_size=batch_size, device=device
        )
        summary = summarize_accuracy(acc["corrupted"], self.heldout, self.train)
        return {
            "clean": acc["clean"],
            **summary,
            "corrupted": acc["corrupted"],
            "heldout_corruptions": self.heldout,
            "train_corruptions": self.train,
            "n_test": len(self.clean),
            "chance": 100.0 / self.n_classes,
        }


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


# ----------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------


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
    keep_freed_memory()
    started, dev = now_iso(), resolve_device(device)
    workers = _workers(threads)
    spec = craft["teacher"]
    seed = int(spec.get("seed", 0))
    prepared = PreparedDataset(data_dir)
    suite = _TestSuite(prepared, cifar10c, cifar10c_labels, craft["corruptions"])
    _seed_everything(seed)
    model = create_cifar_model(spec["model"], suite.n_classes)
    normalize = _normalize().to(dev)
    cfg = TrainConfig.from_config({**spec["train"], "workers": workers})
    images = _train_images(prepared, craft["views"])
    out_weights = Path(out_weights)
    record = {"teacher": dict(spec), "views": dict(craft["views"]), "train": asdict(cfg)}
    summary = train(
        ErmTask(model, None, normalize),
        IndexedImages(images.derive(seed=seed)),
        cfg,
        seed=seed,
        run_dir=out_weights.parent,
        device=dev,
        record=record,
    )
    if not is_main():
        return {}  # data-parallel: rank 0 evaluates and writes
    metrics = suite.evaluate(model, normalize, int(craft["evaluation"]["batch_size"]), dev)
    curves, bad = read_training_log(out_weights.parent / "log.jsonl")
    metrics.update(
        seed=seed,
        params=sum(p.numel() for p in model.parameters()),
        model=dict(spec["model"]),
        train=summary,
        curves=curves,
        nan_count=bad,
    )
    save_weights(out_weights, model.cpu())
    write_json_atomic(out_metrics, metrics)
    write_provenance(
        out_weights.parent / "provenance.json",
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv", *map(Path, cifar10c.values())],
        outputs=[out_weights, Path(out_metrics)],
        config=record,
        seed=seed,
        started=started,
        device=str(dev),
        extra={"train": summary},
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


# ----------------------------------------------------------------------------------------------
# Students
# ----------------------------------------------------------------------------------------------


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
    keep_freed_memory()
    dev = resolve_device(device)
    workers = _workers(threads)
    prepared = PreparedDataset(data_dir)
    suite = _TestSuite(prepared, cifar10c, cifar10c_labels, craft["corruptions"])
    teacher = load_teacher(craft["teacher"], teacher_weights, suite.n_classes).to(dev)
    normalize = _normalize().to(dev)
    cfg = TrainConfig.from_config({**craft["student"]["train"], "workers": workers})
    images = _train_images(prepared, craft["views"])
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
        _seed_everything(seed)
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
        summary = train(
            task,
            IndexedImages(images.derive(seed=seed)),
            cfg,
            seed=seed,
            run_dir=out.parent,
            device=dev,
            record=record,
        )
        if not is_main():
            continue  # data-parallel: rank 0 evaluates and writes
        # --- evaluation: accuracy suite, alignment, curves, cost ------------------------------
        t0 = time.perf_counter()
        metrics = suite.evaluate(student, normalize, batch, dev)
        student_feats = {
            c: pooled_stage_features(student, normalize, x, batch_size=batch, device=dev)
            for c, x in align_images.items()
        }
        curves, bad = read_training_log(out.parent / "log.jsonl")
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
        save_weights(out, student.cpu())
        write_json_atomic(out.parent / "metrics.json", metrics)
        write_provenance(
            out.parent / "provenance.json",
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
            wildcards=run_wildcards(wildcards, seed),
            config=record,
            seed=seed,
            started=started,
            device=str(dev),
            extra={"train": summary},
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
