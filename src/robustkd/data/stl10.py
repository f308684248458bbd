"""STL-10: the official binary archive, read with torchvision's reader.

``prepare_stl10`` verifies ``stl10_binary.tar.gz`` (or reuses an extracted ``stl10_binary``
folder), reads the labelled splits with ``torchvision.datasets.STL10`` and writes the prepared
dataset (``train`` 5,000 and ``test`` 8,000 images of 96x96, packed arrays).
``write_demo_raw_stl10`` writes a miniature archive in the official format: uint8 images
(N, 3, 96, 96) stored column-major (each channel transposed in H/W), labels 1-based.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robustkd.data.cifar import (
    _TEST,
    _TRAIN,
    _check_labels,
    _check_native_size,
    _draw_split,
    _member_error,
    _prepare_arrays,
    _raw_folder,
    _reject_options,
    _without_member_md5s,
    _write_tar_gz,
)
from robustkd.data.demo_raw import write_md5sums
from robustkd.data.registry import register_dataset
from robustkd.errors import DataError

__all__ = ["STL10_CLASSES", "STL10_MD5", "STL10_URL", "prepare_stl10", "write_demo_raw_stl10"]

STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)

_ARCHIVE, _FOLDER = "stl10_binary.tar.gz", "stl10_binary"
_IMAGE_BYTES = 3 * 96 * 96
_FOLDS = 10


def _to_bin(images: np.ndarray) -> bytes:
    """NHWC uint8 images as the official bytes: per image and channel, column-major pixels."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def write_demo_raw_stl10(
    out_dir: Path, *, seed: int, train_per_class: int, test_per_class: int, size: int = 96
) -> list[Path]:
    """Write a miniature ``stl10_binary.tar.gz`` (official format) and ``MD5SUMS``.

    The folder holds ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``,
    ``class_names.txt`` and ``fold_indices.txt`` (10 random training subsets of a fifth of the
    training set each). The 2.6 GB ``unlabeled_X.bin`` is omitted: the pipeline reads only the
    labelled splits. Samples are drawn as in :func:`robustkd.data.cifar.write_demo_raw_cifar10`:
    sample ``i`` of split ``s`` (0 train, 1 test) is ``synthetic.draw_image(
    np.random.default_rng((seed, s, i)), label, 10, 96)``.

    Args:
        out_dir: Folder to write into (created if needed).
        seed: Seed of every random choice; the same seed gives byte-identical files.
        train_per_class: Training images per class.
        test_per_class: Test images per class.
        size: Image side; must be 96, the format's only size.

    Returns:
        The archive and the ``MD5SUMS`` file.

    Raises:
        ValueError: ``size`` is not 96.
    """
    _check_native_size(size, 96, "stl10")
    n = len(STL10_CLASSES)
    train_x, train_y = _draw_split(seed, _TRAIN, n, train_per_class, 96)
    test_x, test_y = _draw_split(seed, _TEST, n, test_per_class, 96)
    rng = np.random.default_rng((seed, 2))
    fold_size = max(1, len(train_y) // 5)
    folds = "".join(
        " ".join(map(str, rng.permutation(len(train_y))[:fold_size])) + "\n" for _ in range(_FOLDS)
    )
    members = {
        "train_X.bin": _to_bin(train_x),
        "train_y.bin": (train_y + 1).astype(np.uint8).tobytes(),
        "test_X.bin": _to_bin(test_x),
        "test_y.bin": (test_y + 1).astype(np.uint8).tobytes(),
        "class_names.txt": "".join(f"{c}\n" for c in STL10_CLASSES).encode(),
        "fold_indices.txt": folds.encode(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = _write_tar_gz(out_dir / _ARCHIVE, _FOLDER, members)
    return [archive, write_md5sums(out_dir, [archive])]


def _check_bin(path: Path) -> None:
    """Raise if an image file's size is not a whole number of 3x96x96 images."""
    if path.name.endswith("_X.bin") and path.stat().st_size % _IMAGE_BYTES:
        raise ValueError(
            f"{path.stat().st_size} bytes is not a multiple of {_IMAGE_BYTES} (3x96x96 images)"
        )


def prepare_stl10(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Prepare STL-10's labelled splits from ``root/stl10_binary.tar.gz``.

    Reads with ``torchvision.datasets.STL10``; its member checksums (which include
    ``unlabeled_X.bin``) are enforced unless the archive md5 was overridden, in which case the
    labelled members are only checked for existence and ``unlabeled_X.bin`` is not needed.

    Args:
        root: Folder holding the archive or its extracted ``stl10_binary`` folder.
        out_dir: The prepared dataset folder to write (splits ``train`` and ``test``).
        download: Download the archive from the official URL when it is missing.
        md5_overrides: ``{"stl10_binary.tar.gz": md5}`` to expect instead of the official md5.
        provenance: Arguments for the provenance record; ``inputs`` defaults to the archive.
        **options: None are accepted.

    Returns:
        ``out_dir``.

    Raises:
        DataError: The archive or a member file is missing, corrupt or malformed (the message
            names the file); nothing is left at ``out_dir`` then.
        ConfigError: Unknown options.
    """
    from torchvision.datasets import STL10

    _reject_options("stl10", options)
    root, out_dir = Path(root), Path(out_dir)
    md5 = (md5_overrides or {}).get(_ARCHIVE, STL10_MD5)
    cls = STL10 if md5 == STL10_MD5 else _without_member_md5s(STL10, drop={"unlabeled_X.bin"})
    with _raw_folder(root, out_dir, _ARCHIVE, _FOLDER, md5, STL10_URL, download) as raw:
        try:
            sets = {split: cls(str(raw.folder), split=split) for split in ("train", "test")}
        except Exception as exc:  # e.g. ValueError reshaping a truncated .bin
            raise _member_error(cls, raw, _check_bin, exc) from exc
        classes = getattr(sets["train"], "classes", None)
        if not classes:
            raise DataError(f"{raw.shown(_FOLDER, 'class_names.txt')}: missing or empty")
        splits = {}
        for split, ds in sets.items():
            labels = np.asarray(ds.labels, dtype=np.int64)
            where = (
                f"{raw.shown(_FOLDER, f'{split}_X.bin')}, {raw.shown(_FOLDER, f'{split}_y.bin')}"
            )
            _check_labels(labels, len(ds.data), len(classes), where)
            splits[split] = (ds.data.transpose(0, 2, 3, 1), labels)  # NCHW -> NHWC
    return _prepare_arrays("stl10", out_dir, list(classes), splits, raw, provenance)


register_dataset("stl10", prepare=prepare_stl10, write_demo_raw=write_demo_raw_stl10)
