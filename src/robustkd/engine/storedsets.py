"""Stored uint8 images as evaluation sets: one array, or the whole stored corrupted set.

:class:`StoredCorruptions` is every (corruption, severity) of the corrupted evaluation set
(:func:`robustkd.engine.corrupted.corrupt_evalset_job`) as one dataset, so that one loader,
its workers started once, serves a job's whole evaluation (issue 25: they were started once
per seed, corruption and severity, 225 times at paper scale).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustkd.readback import load_array

__all__ = ["ArraySet", "StoredCorruptions"]


def _item(images: np.ndarray, i: int) -> torch.Tensor:
    """Image ``i`` of (N, H, W, 3) uint8 ``images`` as uint8 (3, H, W), copied out of a map."""
    return torch.from_numpy(np.array(images[i])).permute(2, 0, 1)


class ArraySet(Dataset):
    """Stored uint8 images as an evaluation set: items ``(uint8 (3, H, W), int64 label)``.

    Args:
        images: (N, H, W, 3) uint8 (a memory map is fine).
        labels: (N,) class indices.

    Raises:
        ValueError: Shapes that do not match (named).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"ArraySet: expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(f"ArraySet: {len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``i`` as uint8 (3, H, W) and its label."""
        return _item(self.images, i), torch.tensor(self.labels[i])


class StoredCorruptions(Dataset):
    """The stored corrupted evaluation set as one dataset: items ``(uint8 (3, S, S), label)``.

    Each file holds the N evaluation images at each of ``severities`` severities, severity
    first: (severities N, S, S, 3) uint8. Item ``f L + k`` (L = severities N) is row ``k`` of
    file ``f``, labelled ``labels[k mod N]``; :meth:`part` gives the items of one
    (file, severity). The files are memory-mapped on first use in each process, never pickled
    with their content (a worker started by spawn opens its own maps).

    Args:
        files: The stored ``.npy`` files, one per corruption.
        labels: (N,) class indices.
        severities: How many severities each file holds.
    """

    def __init__(
        self, files: Sequence[str | os.PathLike[str]], labels: np.ndarray, severities: int
    ) -> None:
        self.files = [Path(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.rows = len(self.labels) * int(severities)
        self._arrays: list[np.ndarray] | None = None

    def arrays(self) -> list[np.ndarray]:
        """The files' memory maps, opened on first use."""
        if self._arrays is None:
            self._arrays = [
                load_array(f, "corrupted evaluation set", mmap_mode="r") for f in self.files
            ]
        return self._arrays

    def part(self, file: int, severity: int) -> range:
        """The items of severity number ``severity`` (0-based, file order) of file ``file``."""
        n = len(self.labels)
        start = file * self.rows + severity * n
        return range(start, start + n)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        """Number of items: files x severities x N."""
        return len(self.files) * self.rows

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``k``: uint8 (3, S, S) and its int64 label."""
        f, row = divmod(int(k), self.rows)
        return _item(self.arrays()[f], row), torch.tensor(self.labels[row % len(self.labels)])
