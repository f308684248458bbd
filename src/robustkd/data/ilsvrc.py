"""The ILSVRC-2012 tree as distributed: finding it under a root, listing its images and labels.

Raw layout (ILSVRC-2012 as distributed, or Kaggle's ``ILSVRC/Data/CLS-LOC/`` inside ``root``):

- ``train/<wnid>/<wnid>_<n>.JPEG``;
- ``val/`` either flat (``ILSVRC2012_val_<8 digits>.JPEG``) with ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the wnid), or
  already sorted into ``val/<wnid>/`` folders.

The tree may sit one folder deeper than ``root``; hidden files (macOS's ``._*`` copies) and
``__MACOSX`` are ignored; ``LOC_val_solution.csv`` may have been re-saved by pandas or a
spreadsheet, and may name images with their extension (:mod:`robustkd.data.rawfiles`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustkd.data.imagenet_classes import WNID
from robustkd.data.rawfiles import find_release_dir, is_junk, read_csv_table
from robustkd.errors import DataError

__all__ = ["VAL_LABELS", "find_ilsvrc_root", "images_in", "val_samples"]

_IMAGE_EXT = {".jpeg", ".jpg", ".png"}
VAL_LABELS = "LOC_val_solution.csv"
_VAL_HEADER = "ImageId,PredictionString"  # the first line of Kaggle's LOC_val_solution.csv


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
