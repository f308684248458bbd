"""The ILSVRC-2012 tree as distributed: finding it under a root, listing its images and labels.

Raw layout (ILSVRC-2012 as distributed, or Kaggle's ``ILSVRC/Data/CLS-LOC/`` inside ``root``):

- ``train/<wnid>/<wnid>_<n>.JPEG``;
- ``val/`` either flat (``ILSVRC2012_val_<8 digits>.JPEG``) with ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the wnid), or
  already sorted into ``val/<wnid>/`` folders.

The tree may sit one folder deeper than ``root``; hidden files (macOS's ``._*`` copies) and
``__MACOSX`` are ignored; ``LOC_val_solution.csv`` may have been re-saved by pandas or a
spreadsheet, and may name images with their extension (:mod:`robustkd.data.rawfiles`).

Archives are not extracted here (CAMELYON17's single archive is): the official
``ILSVRC2012_img_train.tar`` unpacks into one tar per class (``train/n01749939.tar``), 140 GB in
all, and an ImageNet copy is often a read-only shared folder. A class still packed, the official
archives left packed in ``root``, or a flat ``val/`` with only the devkit's ground truth
(``ILSVRC2012_validation_ground_truth.txt``, which numbers classes by ILSVRC2012_ID, not wnid)
stop the job with a message that names what is there and the command that unpacks or sorts it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustkd.data.imagenet_classes import WNID
from robustkd.data.rawfiles import find_release_dir, is_junk, read_csv_table
from robustkd.errors import DataError

__all__ = ["VAL_LABELS", "class_folders", "find_ilsvrc_root", "images_in", "val_samples"]

_IMAGE_EXT = {".jpeg", ".jpg", ".png"}
VAL_LABELS = "LOC_val_solution.csv"
_VAL_HEADER = "ImageId,PredictionString"  # the first line of Kaggle's LOC_val_solution.csv
# The official archives, and the devkit's val ground truth (ILSVRC2012_IDs, not wnids).
_TRAIN_TAR, _VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
_DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
# The usual loop that unpacks train/<wnid>.tar into train/<wnid>/ (run inside train/).
_UNPACK_CLASSES = 'for f in n*.tar; do d="${f%.tar}"; mkdir -p "$d" && tar -xf "$f" -C "$d"; done'
_LAYOUTS = (
    "The two layouts of val/ read are (1) val/<wnid>/*.JPEG, sorted into class folders (as the "
    "valprep.sh of PyTorch's ImageNet example does), and (2) a flat val/ with Kaggle's "
    f"{VAL_LABELS} beside train/ or in the root (or named by data.datasets.imagenet100"
    ".val_labels)"
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
    packed = [n for n in (_TRAIN_TAR, _VAL_TAR) if (root / n).is_file()]
    if packed:
        raise DataError(
            f"{root}: {' and '.join(packed)} found, but no train/ and val/ folders: this job "
            "does not extract the archives (about 150 GB). Unpack them: mkdir train val && "
            f"tar -xf {_TRAIN_TAR} -C train && tar -xf {_VAL_TAR} -C val, then each class's tar: "
            f"cd train && {_UNPACK_CLASSES}; then rerun"
        )
    raise DataError(
        f"{root}: no ILSVRC-2012 train/ and val/ folders found. ImageNet cannot be downloaded "
        "automatically: obtain ILSVRC-2012 from image-net.org and set "
        "data.datasets.imagenet100.root to its folder"
    )


def class_folders(base: Path, wnids: Sequence[str]) -> dict[str, Path]:
    """The ``train/<wnid>/`` folder of each class, checked to exist.

    Args:
        base: The folder holding ``train/`` (:func:`find_ilsvrc_root`).
        wnids: The classes wanted.

    Returns:
        wnid -> its folder, in ``wnids`` order.

    Raises:
        DataError: A class folder is missing; when classes are still packed as
            ``train/<wnid>.tar`` (as the official train archive unpacks), the message says so,
            how many, and the command that unpacks them.
    """
    train = base / "train"
    folders = {w: train / w for w in wnids}
    missing = [w for w, f in folders.items() if not f.is_dir()]
    if not missing:
        return folders
    packed = [w for w in missing if (train / f"{w}.tar").is_file()]
    if packed:
        w = packed[0]
        raise DataError(
            f"{train / w}.tar: class {w} is still packed ({len(packed)} of the {len(wnids)} "
            "classes wanted still packed: the official ILSVRC2012_img_train.tar unpacks into "
            "one tar per class, which this job does not extract). Unpack each into a folder of its "
            f"name: cd {train} && {_UNPACK_CLASSES}; then rerun"
        )
    w = missing[0]
    raise DataError(
        f"{folders[w]}: class folder of {w} missing from the ILSVRC train set ({len(missing)} "
        f"of the {len(wnids)} classes wanted missing: {', '.join(missing[:5])}"
        f"{', ...' if len(missing) > 5 else ''}); ImageNet-100 needs every class of the class "
        "list in train/"
    )


def _has_train_val(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "val").is_dir()


def images_in(folder: Path) -> list[Path]:
    """The image files (``.JPEG``, ``.jpg``, ``.png``, any case) of ``folder``, sorted.

    Hidden files and macOS's ``._*`` copies are left out.
    """
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
        if not tokens or not WNID.match(tokens[0]):
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


def val_samples(
    root: Path, base: Path, wnids: Sequence[str], val_labels: Path | None
) -> list[tuple[Path, str]]:
    """The validation images of classes ``wnids``, as ``(path, wnid)`` pairs.

    Args:
        root: The root the user named (Kaggle's layout keeps the label csv there).
        base: The folder holding ``train/`` and ``val/`` (:func:`find_ilsvrc_root`).
        wnids: The classes wanted.
        val_labels: The label csv of a flat ``val/``; default :data:`VAL_LABELS` beside
            ``train/``, else in ``root``.

    Returns:
        The pairs, class by class in ``wnids`` order when ``val/`` is sorted into class
        folders, else in the sorted order of the flat ``val/``.

    Raises:
        DataError: The label csv is missing or malformed, a val image has no label, or an
            image the csv lists for a wanted class is missing.
    """
    val = base / "val"
    if all((val / w).is_dir() for w in wnids):
        return [(p, w) for w in wnids for p in images_in(val / w)]
    # Flat val: the label csv sits beside train/ or, in Kaggle's layout, in the root.
    candidates = [base / VAL_LABELS, Path(root) / VAL_LABELS]
    csv_path = val_labels or next((c for c in candidates if c.is_file()), candidates[0])
    if not csv_path.is_file():
        raise DataError(_no_val_labels(val, csv_path, [Path(root), base]))
    labels = _read_val_labels(csv_path)
    wanted = set(wnids)
    samples = []
    for p in images_in(val):
        if p.stem not in labels:
            raise DataError(f"{p}: no label for this val image in {csv_path}")
        if labels[p.stem] in wanted:
            samples.append((p, labels[p.stem]))
    for image_id, wnid in labels.items():
        if wnid in wanted and not any(val.glob(f"{image_id}.*")):
            raise DataError(f"{val / image_id}.JPEG: listed in {csv_path} but missing")
    return samples


def _no_val_labels(val: Path, csv_path: Path, roots: Sequence[Path]) -> str:
    """The error of a flat ``val/`` without its label file: what is there, what is read."""
    sorted_some = sorted(p.name for p in val.iterdir() if p.is_dir() and WNID.match(p.name))
    msg = f"{csv_path}: val label file not found, and {val} is not sorted into wnid folders"
    if sorted_some:
        msg += f" (only {len(sorted_some)} are there, e.g. {sorted_some[0]})"
    devkit = [
        c
        for r in dict.fromkeys(roots)
        for c in (r / _DEVKIT_TRUTH, *r.glob(f"*/data/{_DEVKIT_TRUTH}"), *r.glob("*devkit*.tar*"))
        if c.is_file()
    ]
    if devkit:
        msg += (
            f". {devkit[0]} is the devkit's ground truth, which numbers classes by "
            "ILSVRC2012_ID, not wnid: it is not read"
        )
    return f"{msg}. {_LAYOUTS}; put the val images in one of them, then rerun"
