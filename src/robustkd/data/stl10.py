"""STL-10: the official binary archive, read with torchvision's reader.

``prepare_stl10`` verifies ``stl10_binary.tar.gz`` (or reuses an extracted ``stl10_binary``
folder), reads the labelled splits with ``torchvision.datasets.STL10`` and writes the prepared
dataset (``train`` 5,000 and ``test`` 8,000 images of 96x96, packed arrays). Its member
checksums include ``unlabeled_X.bin``; when the archive md5 is overridden the labelled members
are only checked for existence and ``unlabeled_X.bin`` is not needed.
``write_demo_raw_stl10`` writes a miniature archive in the official format: uint8 images
(N, 3, 96, 96) stored column-major (each channel transposed in H/W), labels 1-based. The 2.6 GB
``unlabeled_X.bin`` is omitted: the pipeline reads only the labelled splits. Both are methods
of :class:`~robustkd.data.torchvision_archive.TorchvisionArchive`, shared with CIFAR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from robustkd.data.torchvision_archive import RawFolder, Split, TorchvisionArchive
from robustkd.errors import DataError

__all__ = [
    "STL10",
    "STL10_CLASSES",
    "STL10_MD5",
    "STL10_URL",
    "prepare_stl10",
    "write_demo_raw_stl10",
]

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

_IMAGE_BYTES = 3 * 96 * 96
_FOLDS = 10


def _to_bin(images: np.ndarray) -> bytes:
    """NHWC uint8 images as the official bytes: per image and channel, column-major pixels."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


@dataclass(frozen=True)
class _Stl10(TorchvisionArchive):
    """The STL-10 binary format: raw image and label files, class names as text."""

    optional_members: ClassVar[frozenset[str]] = frozenset({"unlabeled_X.bin"})

    def open_split(self, reader: type, folder: str, split: str) -> Any:
        """Open the labelled ``split`` with ``STL10``."""
        return reader(folder, split=split)

    def check_member(self, path: Path) -> None:
        """Raise if an image file's size is not a whole number of 3x96x96 images."""
        if path.name.endswith("_X.bin") and path.stat().st_size % _IMAGE_BYTES:
            raise ValueError(
                f"{path.stat().st_size} bytes is not a multiple of {_IMAGE_BYTES} (3x96x96 images)"
            )

    def read_classes(self, train: Any, raw: RawFolder) -> list[str]:
        """The class names of ``class_names.txt``.

        Raises:
            DataError: The file is missing or empty.
        """
        classes = getattr(train, "classes", None)
        if not classes:
            raise DataError(f"{raw.shown(self.base_folder, 'class_names.txt')}: missing or empty")
        return list(classes)

    def read_split(self, reader: type, ds: Any, split: str, raw: RawFolder) -> tuple[Split, str]:
        """The split's images (NCHW on file, returned NHWC), labels, and its two files' names."""
        labels = np.asarray(ds.labels, dtype=np.int64)
        shown = [raw.shown(self.base_folder, f"{split}_{xy}.bin") for xy in ("X", "y")]
        return (ds.data.transpose(0, 2, 3, 1), labels), ", ".join(shown)  # NCHW -> NHWC

    def members(self, seed: int, train: Split, test: Split) -> dict[str, bytes]:
        """The official folder's files, but for ``unlabeled_X.bin``.

        ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``, ``class_names.txt``
        and ``fold_indices.txt`` (10 random training subsets of a fifth of the training set).
        """
        (train_x, train_y), (test_x, test_y) = train, test
        rng = np.random.default_rng((seed, 2))
        fold_size = max(1, len(train_y) // 5)
        folds = "".join(
            " ".join(map(str, rng.permutation(len(train_y))[:fold_size])) + "\n"
            for _ in range(_FOLDS)
        )
        return {
            "train_X.bin": _to_bin(train_x),
            "train_y.bin": (train_y + 1).astype(np.uint8).tobytes(),
            "test_X.bin": _to_bin(test_x),
            "test_y.bin": (test_y + 1).astype(np.uint8).tobytes(),
            "class_names.txt": "".join(f"{c}\n" for c in STL10_CLASSES).encode(),
            "fold_indices.txt": folds.encode(),
        }


STL10 = _Stl10(
    "stl10",
    "STL10",
    "stl10_binary.tar.gz",
    STL10_MD5,
    STL10_URL,
    "stl10_binary",
    STL10_CLASSES,
    96,
)
prepare_stl10 = STL10.prepare
write_demo_raw_stl10 = STL10.write_demo_raw
