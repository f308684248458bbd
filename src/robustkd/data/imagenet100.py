"""ImageNet-100 (the CMC class subset) built from a local ILSVRC-2012 copy by linking files.

Raw layout (ILSVRC-2012 as distributed, or Kaggle's ``ILSVRC/Data/CLS-LOC/`` inside ``root``):

- ``train/<wnid>/<wnid>_<n>.JPEG``;
- ``val/`` either flat (``ILSVRC2012_val_<8 digits>.JPEG``) with ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the wnid), or
  already sorted into ``val/<wnid>/`` folders.

ImageNet cannot be downloaded automatically; a missing root is an error. Labels follow the sorted
wnids (as ImageFolder assigns them), not the unsorted order of the CMC list. The tree may sit one
folder deeper than ``root``; hidden files (macOS's ``._*`` copies) and ``__MACOSX`` are ignored;
``LOC_val_solution.csv`` may have been re-saved by pandas or a spreadsheet, and may name images
with their extension (:mod:`robustkd.data.rawfiles`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustkd.data.prepared import PreparedWriter
from robustkd.data.rawfiles import find_release_dir, is_junk, read_csv_table
from robustkd.data.registry import register_dataset
from robustkd.data.synthetic import draw_image
from robustkd.errors import DataError

__all__ = [
    "CMC_WNIDS",
    "compare_with_cmc",
    "find_ilsvrc_root",
    "prepare",
    "read_class_list",
    "write_demo_raw",
]

log = logging.getLogger(__name__)

_WNID = re.compile(r"^n\d{8}$")
_IMAGE_EXT = {".jpeg", ".jpg", ".png"}
VAL_LABELS = "LOC_val_solution.csv"
_VAL_HEADER = "ImageId,PredictionString"  # the first line of Kaggle's LOC_val_solution.csv
# The CMC ImageNet-100 (Tian et al., Contrastive Multiview Coding; the list the Contrastive
# Inversion code uses), in its file's order: config/imagenet100.txt, sha256 79f3f155...1397
# (reference/FACTS.md). Other papers use other 100-class lists; preparation warns about them.
CMC_WNIDS: tuple[str, ...] = tuple(
    """
    n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890
    n03062245 n01773797 n01735189 n07831146 n07753275 n03085013 n04485082 n02105505
    n01983481 n02788148 n03530642 n04435653 n02086910 n02859443 n13040303 n03594734
    n02085620 n02099849 n01558993 n04493381 n02109047 n04111531 n02877765 n04429376
    n02009229 n01978455 n02106550 n01820546 n01692333 n07714571 n02974003 n02114855
    n03785016 n03764736 n03775546 n02087046 n07836838 n04099969 n04592741 n03891251
    n02701002 n03379051 n02259212 n07715103 n03947888 n04026417 n02326432 n03637318
    n01980166 n02113799 n02086240 n03903868 n02483362 n04127249 n02089973 n03017168
    n02093428 n02804414 n02396427 n04418357 n02172182 n01729322 n02113978 n03787032
    n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029
    n03837869 n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630
    n03584829 n02123045 n04229816 n02100583 n03642806 n04336792 n03259280 n02116738
    n02108089 n03424325 n01855672 n02090622
    """.split()
)
# Two real ImageNet classes outside the CMC list: the miniature includes them so that the
# preparation is seen to filter classes.
_OTHER_WNIDS = ("n01440764", "n01443537")


def read_class_list(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Read a wnid list (one per line), optionally keeping its first ``n_classes`` entries.

    Args:
        path: The class list file (``config/imagenet100.txt``).
        n_classes: Keep only the first ``n_classes`` wnids of the file (the miniature's subset).

    Returns:
        The wnids in file order.

    Raises:
        DataError: The file is missing, a line is not a wnid, a wnid repeats, or the list is
            shorter than ``n_classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for i, w in enumerate(wnids, 1):
        if not _WNID.match(w):
            raise DataError(f"{path}:{i}: {w!r} is not a WordNet id (nXXXXXXXX)")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{path}: repeated wnids")
    if n_classes is not None:
        if n_classes > len(wnids):
            raise DataError(f"{path}: asked for {n_classes} classes, the list has {len(wnids)}")
        wnids = wnids[:n_classes]
    return wnids


def compare_with_cmc(
    wnids: Sequence[str], *, subset: bool = False, path: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Compare a class list with the CMC ImageNet-100 list (:data:`CMC_WNIDS`).

    Args:
        wnids: The classes used.
        subset: The classes are deliberately a part of the list (``n_classes``, the miniature):
            CMC classes left out then do not count as differences.
        path: The class list file, hashed into the result when given.

    Returns:
        A record for the provenance: ``cmc`` (True when the list is CMC's, or a part of it
        with ``subset``), ``n_classes``, ``differ`` (classes not shared with CMC's list:
        those outside it plus, unless ``subset``, CMC's classes left out), ``not_in_cmc`` and
        ``missing_from_cmc`` (sorted wnids), and the file's ``path`` and ``sha256``.
    """
    used, cmc = set(wnids), set(CMC_WNIDS)
    extra = sorted(used - cmc)
    missing = [] if subset else sorted(cmc - used)
    record: dict[str, Any] = {
        "cmc": not extra and not missing,
        "n_classes": len(used),
        "differ": max(len(extra), len(missing)),
        "not_in_cmc": extra,
        "missing_from_cmc": missing,
    }
    if path is not None:
        record["path"] = os.fspath(path)
        record["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return record


def _warn_if_not_cmc(record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Log a warning (it lands in the job's log) when a class list is not the CMC list."""
    if record["cmc"]:
        return
    extra, missing = record["not_in_cmc"], record["missing_from_cmc"]
    parts = []
    if extra:
        parts.append(
            f"{len(extra)} of its {record['n_classes']} classes are not CMC classes "
            f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})"
        )
    if missing:
        parts.append(
            f"{len(missing)} of CMC's 100 classes are missing "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )
    log.warning(
        "%s: not the CMC ImageNet-100 class list of the papers: %d classes differ (%s). "
        "Numbers from it are not comparable with results on CMC's list "
        "(config/imagenet100.txt, sha256 79f3f155...1397); the provenance records the list.",
        path,
        record["differ"],
        "; ".join(parts),
    )


def find_ilsvrc_root(root: str | os.PathLike[str]) -> Path:
    """Return the folder that holds ``train/`` and ``val/`` under an ILSVRC-2012 root.

    Accepts the folder itself or Kaggle's layout (``ILSVRC/Data/CLS-LOC/`` inside it).

    Raises:
        DataError: No such folder exists (ImageNet cannot be downloaded automatically).
    """
    root = Path(root)
    for cand in (root, root / "ILSVRC" / "Data" / "CLS-LOC"):
        if _has_train_val(cand):
            return cand
    # One folder deeper (an archive unpacked into a folder of its own), Kaggle's layout too.
    found = find_release_dir(root, None, _has_train_val) or find_release_dir(
        root, "ILSVRC/Data/CLS-LOC", _has_train_val
    )
    if found is not None:
        return found
    raise DataError(
        f"{root}: no ILSVRC-2012 train/ and val/ folders found. ImageNet cannot be downloaded "
        "automatically: obtain ILSVRC-2012 from image-net.org and set "
        "data.datasets.imagenet100.root to its folder"
    )


def _has_train_val(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "val").is_dir()


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in _IMAGE_EXT and not is_junk(p.name) and p.is_file()
    )


def _read_val_labels(csv_path: Path) -> dict[str, str]:
    """ImageId (without extension) -> wnid, from Kaggle's ``LOC_val_solution.csv``."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: val label file not found (flat val/ needs it)")
    table = read_csv_table(csv_path, ("ImageId", "PredictionString"), release=_VAL_HEADER)
    labels: dict[str, str] = {}
    for line, image_id, prediction in table.itertuples():
        image_id = (
            image_id.rsplit(".", 1)[0] if Path(image_id).suffix.lower() in _IMAGE_EXT else image_id
        )
        tokens = prediction.split()
        if not tokens or not _WNID.match(tokens[0]):
            raise DataError(
                f"{csv_path}, line {line}: PredictionString {prediction!r} of {image_id} does "
                "not start with a wnid (the release's: 'n01751748 43 25 476 376 ...')"
            )
        if labels.setdefault(image_id, tokens[0]) != tokens[0]:
            raise DataError(
                f"{csv_path}, line {line}: {image_id} is labelled {tokens[0]} here and "
                f"{labels[image_id]} on an earlier line"
            )
    return labels


def _val_samples(
    root: Path, base: Path, wnids: Sequence[str], val_labels: Path | None
) -> list[tuple[Path, str]]:
    val = base / "val"
    if all((val / w).is_dir() for w in wnids):
        return [(p, w) for w in wnids for p in _images_in(val / w)]
    # Flat val: the label csv sits beside train/ or, in Kaggle's layout, in the root.
    candidates = [base / VAL_LABELS, Path(root) / VAL_LABELS]
    csv_path = val_labels or next((c for c in candidates if c.is_file()), candidates[0])
    labels = _read_val_labels(csv_path)
    wanted = set(wnids)
    samples = []
    for p in _images_in(val):
        if p.stem not in labels:
            raise DataError(f"{p}: no label for this val image in {csv_path}")
        if labels[p.stem] in wanted:
            samples.append((p, labels[p.stem]))
    for image_id, wnid in labels.items():
        if wnid in wanted and not any(val.glob(f"{image_id}.*")):
            raise DataError(f"{val / image_id}.JPEG: listed in {csv_path} but missing")
    return samples


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
        root: The ILSVRC-2012 folder (see :func:`find_ilsvrc_root`).
        out_dir: The prepared dataset folder to write.
        download: Ignored except for the error message: ImageNet has no public download.
        md5_overrides: Unused (a local tree has no archive checksum).
        provenance: Provenance fields for the prepared folder.
        class_list: The wnid list (CMC's ImageNet-100). Another list is used as given, with a
            warning in the job's log naming how many classes differ from CMC's; the comparison
            (:func:`compare_with_cmc`) is recorded in the provenance as ``class_list``. Not
            compared when ``exclude_class_list`` is given (a pretraining corpus is not CMC's).
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
        _warn_if_not_cmc(cmc, class_list)
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
    with PreparedWriter(out_dir, classes, provenance=prov) as writer:
        for w in classes:
            folder = base / "train" / w
            if not folder.is_dir():
                raise DataError(f"{folder}: class folder of {w} missing from the ILSVRC train set")
            files = _images_in(folder)
            if not files:
                raise DataError(f"{folder}: no images")
            for p in files:
                writer.add_file("train", label_of[w], p, name=f"{w}/{p.name}")
        val_csv = Path(val_labels) if val_labels else None
        for p, w in _val_samples(root, base, classes, val_csv):
            writer.add_file("val", label_of[w], p, name=f"{w}/{p.name}")
    return Path(out_dir)


def write_demo_raw(
    out_dir: Path,
    *,
    seed: int,
    class_list: str | os.PathLike[str] = "config/imagenet100.txt",
    n_classes: int = 10,
    train_per_class: int = 50,
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


register_dataset("imagenet100", prepare=prepare, write_demo_raw=write_demo_raw)
