"""ImageNet-100 (the CMC class subset) built from a local ILSVRC-2012 copy by linking files.

The ILSVRC-2012 tree and its readers are in :mod:`robustkd.data.ilsvrc`; the class list (CMC's)
in :mod:`robustkd.data.imagenet_classes`. ImageNet cannot be downloaded automatically; a
missing root is an error. Labels follow the sorted wnids (as ImageFolder assigns them), not
the unsorted order of the CMC list.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustkd.data.ilsvrc import (
    VAL_LABELS,
    class_folders,
    find_ilsvrc_root,
    images_in,
    val_samples,
)
from robustkd.data.imagenet_classes import (
    CMC_WNIDS,
    compare_with_cmc,
    read_class_list,
    warn_if_not_cmc,
)
from robustkd.data.prepared import PreparedWriter
from robustkd.data.synthetic import draw_image
from robustkd.errors import DataError

__all__ = ["prepare", "write_demo_raw"]

DEMO_TRAIN_PER_CLASS = 50
"""Training images per target class of :func:`write_demo_raw` unless told otherwise."""

# Two real ImageNet classes outside the CMC list: the miniature includes them so that the
# preparation is seen to filter classes.
_OTHER_WNIDS = ("n01440764", "n01443537")


def prepare(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    class_list: str | os.PathLike[str] = "config/imagenet100.txt",
    n_classes: int | None = None,
    val_labels: str | os.PathLike[str] | None = None,
    exclude_class_list: str | os.PathLike[str] | None = None,
) -> Path:
    """Build the prepared ImageNet-100 by linking the CMC classes' files of an ILSVRC root.

    Args:
        root: The ILSVRC-2012 folder (see :func:`~robustkd.data.ilsvrc.find_ilsvrc_root`).
        out_dir: The prepared dataset folder to write.
        download: Ignored except for the error message: ImageNet has no public download.
        md5_overrides: Unused (a local tree has no archive checksum).
        provenance: Provenance fields for the prepared folder.
        class_list: The wnid list (CMC's ImageNet-100). Another list is used as given, with a
            warning in the job's log naming how many classes differ from CMC's; the comparison
            (:func:`~robustkd.data.imagenet_classes.compare_with_cmc`) is recorded in the
            provenance as ``class_list``. Not compared when ``exclude_class_list`` is given (a
            pretraining corpus is not CMC's).
        n_classes: Use only the first ``n_classes`` wnids of the list (miniature).
        val_labels: Label file for a flat val folder; default ``LOC_val_solution.csv`` beside
            ``train/`` or in the root.
        exclude_class_list: A wnid list none of whose classes may be prepared: a pretraining
            corpus names the target classes (``config/imagenet100.txt``) here, so that its
            teacher provably never sees a target label.

    Returns:
        ``out_dir``.

    Raises:
        DataError: Missing root, class folder, val label or image, an unreadable image, or a
            class of ``class_list`` that ``exclude_class_list`` forbids.
    """
    del download, md5_overrides
    wnids = read_class_list(class_list, n_classes)
    cmc: dict | None = None
    if exclude_class_list is None:
        subset = n_classes is not None and n_classes < len(CMC_WNIDS)  # the miniature's part
        cmc = compare_with_cmc(wnids, subset=subset, path=class_list)
        warn_if_not_cmc(cmc, class_list)
    else:  # a pretraining corpus: it must share no class with the target dataset
        overlap = sorted(set(wnids) & set(read_class_list(exclude_class_list)))
        if overlap:
            raise DataError(
                f"{class_list}: {len(overlap)} classes are in {exclude_class_list}, which this "
                f"dataset must not contain: {', '.join(overlap[:5])}"
            )
    base = find_ilsvrc_root(root)
    classes = sorted(wnids)
    label_of = {w: i for i, w in enumerate(classes)}
    prov = dict(provenance or {"rule": "prepare_imagenet100"})
    inputs = [class_list] + [p for p in (val_labels, exclude_class_list) if p]
    prov.setdefault("inputs", [p for p in inputs if Path(p).is_file()])
    prov["extra"] = {**(prov.get("extra") or {}), "source": str(base), "wnids": classes}
    if cmc is not None:
        prov["extra"]["class_list"] = cmc
    if exclude_class_list is not None:
        prov["extra"]["excluded_classes"] = read_class_list(exclude_class_list)
    folders = class_folders(base, classes)  # every class, before anything is written
    with PreparedWriter(out_dir, classes, provenance=prov) as writer:
        for w, folder in folders.items():
            files = images_in(folder)
            if not files:
                raise DataError(f"{folder}: no images")
            for p in files:
                writer.add_file("train", label_of[w], p, name=f"{w}/{p.name}")
        val_csv = Path(val_labels) if val_labels else None
        for p, w in val_samples(root, base, classes, val_csv):
            writer.add_file("val", label_of[w], p, name=f"{w}/{p.name}")
    return Path(out_dir)


def write_demo_raw(
    out_dir: Path,
    *,
    seed: int,
    class_list: str | os.PathLike[str] = "config/imagenet100.txt",
    n_classes: int = 10,
    train_per_class: int = DEMO_TRAIN_PER_CLASS,
    val_per_class: int = 20,
    size: int = 48,
    other_classes: int = 2,
    other_class_list: str | os.PathLike[str] | None = None,
    other_train_per_class: int | None = None,
    other_val_per_class: int | None = None,
) -> list[Path]:
    """Write a miniature ILSVRC-2012 tree: ``train/<wnid>/``, flat ``val/`` and its label csv.

    The first ``n_classes`` wnids of the class list get procedurally drawn images with a
    learnable class signal. ``other_classes`` non-CMC wnids are added: by default two real
    ImageNet classes, so that preparation is seen to filter; with ``other_class_list``, the
    first ``other_classes`` wnids of that list, standing for the rest of ImageNet-1k (the
    miniature's pretraining corpus, prepared from the same tree with that list). Every class
    has its own signature in one signature space of ``n_classes + other_classes`` classes
    (:func:`~robustkd.data.synthetic.class_signature`): targets first, then the others. Train
    images vary in size between ``size`` and 1.25 x ``size``.

    Args:
        out_dir: The folder to write (the miniature ILSVRC root).
        seed: Seed of every random choice.
        class_list: The wnid list.
        n_classes: How many CMC classes the miniature holds.
        train_per_class: Training images per target class.
        val_per_class: Validation images per target class.
        size: Smallest image side in pixels.
        other_classes: Non-CMC classes to add (at most 2 without ``other_class_list``).
        other_class_list: A wnid list of the other classes (must not share a wnid with the
            targets).
        other_train_per_class: Training images per other class (default ``train_per_class``).
        other_val_per_class: Validation images per other class (default ``val_per_class``).

    Returns:
        The files written.

    Raises:
        DataError: An other class is also a target class, or a list is too short.
    """
    rng = np.random.default_rng(seed)
    targets = read_class_list(class_list, n_classes)
    if other_class_list is not None:
        others = read_class_list(other_class_list, other_classes)
    elif other_classes > len(_OTHER_WNIDS):
        raise DataError(f"other_classes {other_classes} > {len(_OTHER_WNIDS)} needs a class list")
    else:
        others = list(_OTHER_WNIDS[:other_classes])
    shared = sorted(set(targets) & set(others))
    if shared:
        raise DataError(f"{other_class_list}: classes {shared} are also target classes")
    # Class signal follows the label order of the prepared dataset (sorted CMC wnids).
    signal_of = {w: i for i, w in enumerate(sorted(targets))}
    n_signals = n_classes + len(others)
    for k, w in enumerate(others):
        signal_of[w] = n_classes + k
    n_train = dict.fromkeys(targets, train_per_class)
    n_train.update(dict.fromkeys(others, other_train_per_class or train_per_class))
    n_val = dict.fromkeys(targets, val_per_class)
    n_val.update(dict.fromkeys(others, other_val_per_class or val_per_class))
    written: list[Path] = []

    def draw(w: str, name: Path) -> None:
        side = int(rng.integers(size, int(size * 1.25) + 1))
        img = draw_image(rng, signal_of[w], n_signals, side)
        name.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(name, format="JPEG", quality=92)
        written.append(name)

    for w in targets + others:
        for i in range(n_train[w]):
            draw(w, out_dir / "train" / w / f"{w}_{i + 1}.JPEG")
    val_rows = []
    order = [w for w in targets + others for _ in range(n_val[w])]
    perm = rng.permutation(len(order))
    for idx, j in enumerate(perm, 1):
        w = order[j]
        image_id = f"ILSVRC2012_val_{idx:08d}"
        draw(w, out_dir / "val" / f"{image_id}.JPEG")
        val_rows.append((image_id, f"{w} 0 0 {size - 1} {size - 1}"))
    csv_path = out_dir / VAL_LABELS
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerows(sorted(val_rows))
    written.append(csv_path)
    return written
