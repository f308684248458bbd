"""Fig 3's label fractions: what a fraction asks for, what it keeps, and how both are written.

A label fraction ``f`` keeps ``max(1, round(f * n))`` training images of a class of ``n``
(:func:`kept_per_class`; the subset itself is drawn by
:func:`robustkd.engine.data.label_fraction_indices`). On a small set the share kept can differ
much from the share asked (``0.001`` of 6 images per class keeps 1: 16.7 %). The fine-tuning
job writes the share it used to ``metrics.json`` (``fraction_used``); Fig 3 and the claims plot
and state that share (:func:`fraction_used`, :func:`share_text`), and the workflow warns at
config time when a fraction keeps another number of images than it asks
(:func:`fraction_warnings`, with the class sizes of :func:`fig3_class_sizes`).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ILSVRC_PER_CLASS",
    "fig3_class_sizes",
    "fraction_batch",
    "fraction_min_steps",
    "fraction_run_epochs",
    "fraction_used",
    "fraction_warnings",
    "kept_per_class",
    "percent",
    "share_kept",
    "share_text",
]

ILSVRC_PER_CLASS = 1300
"""Training images of most ILSVRC-2012 classes: the class size assumed before preparation."""

_TOLERANCE = 0.01  # relative difference between the share kept and asked that warrants a warning


def kept_per_class(fraction: float, n: int) -> int:
    """Images a label fraction keeps of a class of ``n``: ``max(1, round(fraction * n))``."""
    return max(1, int(round(fraction * n)))


def share_kept(class_sizes: Sequence[int], fraction: float) -> float:
    """Share of the labelled images a fraction keeps, over classes of the given sizes."""
    kept = sum(kept_per_class(fraction, int(n)) for n in class_sizes)
    return kept / sum(int(n) for n in class_sizes)


def percent(fraction: float) -> str:
    """A fraction as a percentage of three significant digits: ``0.005`` -> ``0.5%``."""
    return f"{float(f'{100 * fraction:.3g}'):g}%"


def share_text(used: float, asked: float) -> str:
    """The share of labels a run used, and what was asked when that differs.

    Args:
        used: The share used (``fraction_used`` of the metrics file).
        asked: The configured fraction.

    Returns:
        ``4%``, or ``16.7% (0.1% asked)``.
    """
    if percent(used) == percent(asked):
        return percent(used)
    return f"{percent(used)} ({percent(asked)} asked)"


def fraction_used(metrics: Mapping[str, Any], path: str | os.PathLike[str], asked: float) -> float:
    """The share of the labels a fine-tuning run used, from its metrics file.

    Args:
        metrics: The metrics file's content.
        path: Its path (for the message).
        asked: The run's configured fraction (1.0 keeps every image: no need to read it).

    Returns:
        ``metrics["fraction_used"]`` (or 1.0 for a run of the whole set).

    Raises:
        ValueError: The file has no ``fraction_used`` (written before robustkd recorded it);
            the message names the file and what to do.
    """
    if "fraction_used" in metrics:
        return float(metrics["fraction_used"])
    if float(asked) == 1.0:
        return 1.0
    raise ValueError(
        f"{path}: no 'fraction_used' (the share of labels the run kept; metrics files written "
        f"before it was recorded lack it), so its label fraction {asked:g} cannot be shown as "
        "used; rerun the label-fraction fine-tuning (snakemake --forcerun finetune_fractions)"
    )


def fraction_min_steps(config: Mapping[str, Any]) -> int:
    """Optimizer steps each Fig 3 run makes at least: ``experiments.fig3.min_steps`` (absent: 0).

    A run whose fraction is too small for them in ``training.finetune.epochs`` trains for more
    epochs (:func:`fraction_run_epochs`, :func:`robustkd.engine.optim.stretch_epochs`).
    """
    fig3 = (config.get("experiments") or {}).get("fig3") or {}
    return int(fig3.get("min_steps") or 0)


def fraction_batch(images: int, batch_size: int, world: int = 1) -> int:
    """Batch of a fine-tuning run on ``images`` images.

    A small label fraction may hold fewer images than ``batch_size``: the batch shrinks to it
    (a multiple of ``world`` data-parallel processes, at least ``world``).
    """
    batch = min(batch_size, images)
    return max(world, batch - batch % world)


def fraction_run_epochs(
    images: int, batch_size: int, epochs: int, min_steps: int, world: int = 1
) -> int:
    """Epochs a fine-tuning run on ``images`` images makes under a floor of ``min_steps`` steps.

    An epoch makes ``images // batch`` steps (at least 1) at :func:`fraction_batch`'s batch,
    dropping an incomplete last batch; the run makes whole epochs, ``epochs`` or more.
    Example: 60 images, batch 64, 6 epochs, floor 100 -> one step per epoch, 100 epochs;
    750 images -> 11 steps per epoch, 10 epochs (110 steps).

    Raises:
        ValueError: ``images`` below 1 or ``min_steps`` below 0 (named).
    """
    if images < 1:
        raise ValueError(f"a fine-tuning run needs at least one image, not {images}")
    if min_steps < 0:
        raise ValueError(f"experiments.fig3.min_steps must be 0 or more, not {min_steps}")
    per_epoch = max(1, images // fraction_batch(images, batch_size, world))
    return max(epochs, -(-min_steps // per_epoch))


def fig3_class_sizes(
    config: Mapping[str, Any], *, workdir: str | os.PathLike[str] = "."
) -> tuple[list[int], str]:
    """Training images per class of Fig 3's data (ImageNet-100), as far as known before a run.

    Args:
        config: The merged config.
        workdir: The working directory.

    Returns:
        ``(sizes, source)``: the train split's class sizes from the prepared
        ``results/data/imagenet100/manifest.csv`` when it exists; else the miniature's
        ``train_per_class`` when the miniature stands in for ImageNet-100; else
        :data:`ILSVRC_PER_CLASS` per class. ``source`` says which.
    """
    from robustkd.datasources import uses_demo_raw

    manifest = Path(workdir) / "results" / "data" / "imagenet100" / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as fh:
            counts = Counter(r["label"] for r in csv.DictReader(fh) if r.get("split") == "train")
        if counts:
            return list(counts.values()), f"the prepared {manifest.parent}"
    source = config["data"]["datasets"]["imagenet100"]
    n_classes = int(source.get("n_classes", 100))
    if uses_demo_raw(config, "imagenet100", workdir=workdir):
        from robustkd.data.imagenet100 import DEMO_TRAIN_PER_CLASS

        per_class = (
            config["demo_raw"].get("imagenet100", {}).get("train_per_class", DEMO_TRAIN_PER_CLASS)
        )
        return [int(per_class)] * n_classes, "the miniature (demo_raw.imagenet100)"
    return [ILSVRC_PER_CLASS] * n_classes, (
        f"ILSVRC-2012's {ILSVRC_PER_CLASS:,} images per class, until it is prepared"
    )


def fraction_warnings(
    config: Mapping[str, Any], *, workdir: str | os.PathLike[str] = "."
) -> list[str]:
    """Fig 3 fractions that keep another number of images than they ask, in words.

    Args:
        config: The merged config (``experiments.fig3.fractions``).
        workdir: The working directory.

    Returns:
        One message per such fraction (empty when every fraction keeps what it asks, within
        1 % of it), naming the config key, the fraction, the images kept and the share used.
    """
    fig3 = (config.get("experiments") or {}).get("fig3") or {}
    fractions = [float(f) for f in fig3.get("fractions", [])]
    if not fractions:
        return []
    sizes, source = fig3_class_sizes(config, workdir=workdir)
    asked_images = {f: sum(f * n for n in sizes) for f in fractions}
    messages = []
    for f in fractions:
        used = share_kept(sizes, f)
        if abs(used - f) <= _TOLERANCE * f:
            continue
        kept = round(used * sum(sizes))
        more = "more" if used > f else "fewer"
        messages.append(
            f"config key 'experiments.fig3.fractions': {f:g} keeps {kept:,} training images "
            f"({percent(used)} of the labels, at least one and a whole number per class), "
            f"{more} than the {asked_images[f]:,.4g} it asks (class sizes from {source}); "
            f"Fig 3 and the claims show {percent(used)}"
        )
    same: dict[int, list[float]] = {}
    for f in fractions:
        same.setdefault(round(share_kept(sizes, f) * sum(sizes)), []).append(f)
    for kept, group in same.items():
        if len(group) > 1:
            messages.append(
                f"config key 'experiments.fig3.fractions': {', '.join(f'{f:g}' for f in group)} "
                f"keep the same {kept:,} images (same runs); keep one of them"
            )
    return messages
