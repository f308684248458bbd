"""Corruptions never trained on: the corrupted evaluation set and its evaluation (issue 17).

The fine-tuned classifiers of Table 1 are scored on the 15 benchmark corruptions x 5
severities of :mod:`robustkd.corruptions` (one implementation; the ``cifar10c``
parameters at the miniature's 32 px, the ``imagenetc`` ones, ``make_imagenet_c.py``, at the
paper's 224 px), applied to the evaluation view of the validation images (Resize(S 256/224) +
CenterCrop(S), the view every model is tested on), as the released benchmarks apply them to
Resize(256) + CenterCrop(224) crops.

As the released benchmarks do, the corrupted set is generated **once**, seeded, stored as
uint8 (the benchmark stores 8-bit images too) and read by every model:
:func:`corrupt_evalset_job` writes ``{corruption}.npy`` (N x S rows, severity 1 first: shape
(S_n N, H, W, 3)) and ``labels.npy`` (N,); chunk ``k`` of severity ``s`` of corruption ``c``
draws from ``seeded_generator("cpu", seed, crc32(c), s, k)``, so the set is a function of the
seed and the chunk size. :func:`corruption_eval_job` scores every seed's classifier with the
evaluation engine (:func:`robustkd.engine.evaluate.evaluate_parts`), the stored images being
its test set and no further distortion applied: there is no second evaluation loop. The whole
set is one dataset (:class:`~robustkd.engine.storedsets.StoredCorruptions`) read in one pass
through one loader, each batch scored by every classifier.

Why stored, not regenerated per model: the generation job records its time per corruption,
and each evaluation job records its time to read the set; docs/beyond.md compares them (the
measurement decides; the numbers are not hard-coded here).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustkd.atomic import save_npy_atomic, write_json_atomic
from robustkd.corruptions import (
    PROTOCOLS,
    corruption_key,
    create_corruption,
    frost_source,
    to_uint8,
)
from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import seeded_generator
from robustkd.engine.data import ViewConfig, epoch_batches, load_image_set, make_loader
from robustkd.engine.evaluate import EvalLoader, evaluate_parts
from robustkd.engine.inputs import eval_setup, eval_split
from robustkd.engine.jobsetup import set_threads, write_run_provenance
from robustkd.engine.storedsets import ArraySet, StoredCorruptions
from robustkd.provenance import now_iso, record_beside, write_provenance
from robustkd.readback import load_array

log = logging.getLogger(__name__)

__all__ = [
    "ArraySet",
    "StoredCorruptions",
    "corrupt_evalset_job",
    "corruption_eval_job",
    "summarise_seed",
]


def _clean_eval_images(
    prepared: PreparedDataset, split: str, size: int, preload_size: int | None, batch: int = 256
) -> tuple[torch.Tensor, np.ndarray]:
    """The evaluation view of ``split``: uint8 (N, 3, size, size) and labels (N,)."""
    test_set = load_image_set(
        prepared, split, ViewConfig(size=size), train=False, preload_size=preload_size
    )
    batches = epoch_batches(len(test_set), batch, 0, 0, shuffle=False, drop_last=False)
    images, labels = zip(*make_loader(test_set, batches), strict=True)
    return torch.cat(images), torch.cat(labels).numpy()


def corrupt_evalset_job(
    *,
    data_dir: str | os.PathLike[str],
    size: int,
    protocol: str,
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    chunk: int,
    outputs: Mapping[str, str | os.PathLike[str]],
    labels_out: str | os.PathLike[str],
    preload_size: int | None = None,
    threads: int = 1,
    rule: str = "corrupt_evalset",
    wildcards: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the corrupted copy of the evaluation view, one uint8 file per corruption.

    Args:
        data_dir: Prepared ImageNet-100 (its ``test`` split if any, else ``val``).
        size: The backbones' input side S in pixels.
        protocol: ``cifar10c`` or ``imagenetc`` (its parameters; a size other than the
            protocol's own is logged, not refused: the tiny test overlay runs at 16 px).
        corruptions: Corruption names.
        severities: Severities (1-5).
        seed: Seed of every random draw.
        chunk: Images corrupted per call (bounds memory: motion blur gathers
            ``(2 ceil(radius) + 1) H W`` values per image).
        outputs: Corruption -> its ``.npy`` (S_n N, S, S, 3) uint8, severity-major.
        labels_out: ``labels.npy`` (N,) uint8.
        preload_size: ``views.preload_size`` (decode once at this size).
        threads: CPU threads.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.

    Returns:
        ``{"seconds": {corruption: s}, "bytes": total, "n": N}`` (also in the provenance).

    Raises:
        ValueError: Unknown protocol, corruption or severity (named); ``chunk`` < 1.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"corruptions.protocol: unknown {protocol!r} (known: {sorted(PROTOCOLS)})")
    if int(chunk) < 1:
        raise ValueError(f"corruptions.chunk must be >= 1, got {chunk!r}")
    if PROTOCOLS[protocol] != int(size):
        log.warning(
            "%s parameters are published for %d px images; applying them at %d px as they are",
            protocol,
            PROTOCOLS[protocol],
            size,
        )
    started = now_iso()
    set_threads(threads)
    prepared = PreparedDataset(data_dir)
    split = eval_split(prepared)
    clean, labels = _clean_eval_images(prepared, split, int(size), preload_size)
    seconds: dict[str, float] = {}
    for name in corruptions:
        t0 = time.perf_counter()
        parts = []
        for s in severities:
            op = create_corruption(name, int(s), protocol)
            for k, start in enumerate(range(0, len(clean), int(chunk))):
                x = clean[start : start + int(chunk)].float() / 255.0  # (B, 3, S, S)
                g = seeded_generator("cpu", seed, corruption_key(name), int(s), k)
                parts.append(to_uint8(op(x, g)))  # (B, S, S, 3) uint8
        save_npy_atomic(Path(outputs[name]), np.concatenate(parts))
        seconds[name] = time.perf_counter() - t0
        log.info("%s: %d images in %.2f s", name, len(clean) * len(severities), seconds[name])
    save_npy_atomic(Path(labels_out), labels.astype(np.uint8))
    files = [*map(Path, outputs.values()), Path(labels_out)]
    stats = {
        "seconds": seconds,
        "seconds_total": float(sum(seconds.values())),
        "bytes": int(sum(f.stat().st_size for f in files)),
        "n": len(clean),
        "split": split,
    }
    log.info("corrupted set: %.1f s, %.1f MB", stats["seconds_total"], stats["bytes"] / 1e6)
    write_provenance(
        Path(labels_out).parent / "provenance.json",
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv"],
        outputs=files,
        wildcards=wildcards or {},
        config={
            "protocol": protocol,
            "size": int(size),
            "corruptions": list(corruptions),
            "severities": [int(s) for s in severities],
            "seed": int(seed),
            "chunk": int(chunk),
        },
        seed=int(seed),
        started=started,
        # Which frost images were blended: the photographs, or the procedural fallback.
        extra={
            "generation": stats,
            **({"frost_source": frost_source()} if "frost" in corruptions else {}),
        },
    )
    return stats


def summarise_seed(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-seed summaries of one seed's results (one per corruption and severity).

    Args:
        results: Records with ``corruption``, ``severity`` and ``top1`` (%).

    Returns:
        ``per_corruption`` (mean top-1 over severities), ``per_severity`` (mean over
        corruptions, keys as strings) and ``mean`` (over all), in %.
    """
    by_c: dict[str, list[float]] = {}
    by_s: dict[str, list[float]] = {}
    for r in results:
        by_c.setdefault(str(r["corruption"]), []).append(float(r["top1"]))
        by_s.setdefault(str(int(r["severity"])), []).append(float(r["top1"]))
    return {
        "per_corruption": {c: float(np.mean(v)) for c, v in by_c.items()},
        "per_severity": {s: float(np.mean(v)) for s, v in by_s.items()},
        "mean": float(np.mean([float(r["top1"]) for r in results])),
    }


def corruption_eval_job(
    *,
    backbone: Mapping[str, Any],
    models: Sequence[str | os.PathLike[str]],
    seeds: Sequence[int],
    data_dir: str | os.PathLike[str],
    corrupted: Mapping[str, str | os.PathLike[str]],
    labels: str | os.PathLike[str],
    severities: Sequence[int],
    evaluation: Mapping[str, Any],
    views: Mapping[str, Any],
    out: str | os.PathLike[str],
    threads: int = 1,
    device: str = "auto",
    rule: str = "evaluate_corruptions",
    wildcards: Mapping[str, Any] | None = None,
    record_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score fine-tuned classifiers (one per seed) on every stored corruption and severity.

    Args:
        backbone: The classifiers' backbone spec (its input size must be the set's).
        models: ``model.pth`` of each seed.
        seeds: The seeds, in the order of ``models``.
        data_dir: Prepared ImageNet-100 (for the class count).
        corrupted: Corruption -> its stored ``.npy`` (:func:`corrupt_evalset_job`).
        labels: The stored ``labels.npy``.
        severities: The severities stored, in file order.
        evaluation: ``batch_size``, ``amp``.
        views: The views config (normalisation comes from the backbone).
        out: The ``corruptions.json`` to write.
        threads: CPU threads.
        device: Device name or ``auto``.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
        record_file: The job's provenance record (the rule's declared output); default
            ``corruptions.provenance.json`` beside ``out``
            (:func:`robustkd.provenance.record_beside`), never the folder's ``provenance.json``,
            which the other evaluation job of the same (method, distortion) would overwrite.

    Returns:
        The record written: ``results`` (seed, corruption, severity, top1, top5, n) and
        ``per_seed`` summaries (:func:`summarise_seed`).

    Raises:
        ValueError: A stored file whose size does not match the backbone's input or the
            number of severities (named).
    """
    started = now_iso()
    env = eval_setup(
        backbone=backbone, views=views, data_dir=data_dir, threads=threads, device=device
    )
    view = env.view
    t0 = time.perf_counter()
    y = load_array(labels, "corrupted-set labels")
    data = StoredCorruptions(list(corrupted.values()), y, len(severities))
    for path, arr in zip(corrupted.values(), data.arrays(), strict=True):
        if arr.shape[1:] != (view.size, view.size, 3) or len(arr) != len(y) * len(severities):
            raise ValueError(
                f"{path}: shape {arr.shape}, expected ({len(y) * len(severities)}, {view.size}, "
                f"{view.size}, 3) for {len(y)} images x {len(severities)} severities at the "
                f"backbone's {view.size} px; delete it and rerun corrupt_evalset"
            )
    read_seconds = time.perf_counter() - t0
    # One pass: every batch read once, scored by every seed's classifier; one loader, its
    # workers started once for the whole job.
    cells = [(name, int(s)) for name in corrupted for s in severities]
    parts = [data.part(f, j) for f in range(len(corrupted)) for j in range(len(severities))]
    loader = EvalLoader(data, env.workers)
    t1 = time.perf_counter()
    scores = evaluate_parts(
        [env.classifier(backbone, path) for path in models],
        loader,
        parts,
        env.normalize,
        batch_size=int(evaluation["batch_size"]),
        device=env.device,
        amp=bool(evaluation.get("amp", False)),
    )
    read_seconds += loader.wait_seconds
    eval_seconds = time.perf_counter() - t1 - loader.wait_seconds
    results: list[dict[str, Any]] = []
    for seed, per_part in zip(seeds, scores, strict=True):
        for (name, s), m in zip(cells, per_part, strict=True):
            results.append({"seed": int(seed), "corruption": name, "severity": s, **m})
        log.info(
            "seed %d: mean top-1 over corruptions %.2f%%",
            seed,
            np.mean([r["top1"] for r in results if r["seed"] == int(seed)]),
        )
    per_seed = {
        str(int(s)): summarise_seed([r for r in results if r["seed"] == int(s)]) for s in seeds
    }
    record = {
        "corruptions": list(corrupted),
        "severities": [int(s) for s in severities],
        "size": view.size,
        "results": results,
        "per_seed": per_seed,
    }
    out = Path(out)
    write_json_atomic(out, record)
    write_run_provenance(
        out.parent,
        record=record_file if record_file is not None else record_beside(out),
        rule=rule,
        inputs=[*models, *corrupted.values(), labels, Path(data_dir) / "manifest.csv"],
        outputs=[out],
        wildcards=wildcards or {},
        config={"evaluation": dict(evaluation), "severities": [int(s) for s in severities]},
        seed=None,
        started=started,
        device=env.device,
        extra={"timing": {"read_seconds": read_seconds, "eval_seconds": eval_seconds}},
    )
    return record
