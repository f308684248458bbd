"""How evaluation reads its images and moves them to the device (issue 25).

- **Loader workers start once per job.** :class:`EvalLoader` is one data loader with
  persistent workers; every pass of a job (each repeat, seed, test distortion or part of a
  stored set) is a new list of batches through it.
- **Pinned host memory is bounded.** Each batch is pinned on its way to the GPU
  (:func:`pin_batch`, the only place evaluation pins) and released once copied; the scoring
  loop (:mod:`robustkd.engine.evaluate`) lets at most a few batches be in flight. Pinning the
  whole set, as before, held the CAMELYON17 test set in about 21 GiB of page-locked memory
  (PyTorch's caching host allocator rounds a batch of 36.75 MiB to 64 MiB).
- **Decoded batches are kept** for the repeats after the first, in pageable memory, only
  while the whole set fits :data:`CACHE_BYTES` (:class:`KeptBatches`); a larger set is read
  again for each repeat (the same pixels: the evaluation view is deterministic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["CACHE_BYTES", "Batch", "EvalLoader", "KeptBatches", "pin_batch", "to_device"]

CACHE_BYTES = 4 * 2**30
"""Largest decoded evaluation set (bytes) kept in memory for the repeats after the first: the
ImageNet-100 validation set at 224 px is 0.7 GiB as uint8; CAMELYON17's test set, 12 GiB, is
read again for each repeat instead of filling a 32 GB job."""

Batch = tuple[Tensor, Tensor]
"""Images (B, 3, S, S), uint8 or float in [0, 1], and their labels (B,)."""


def pin_batch(x: Tensor) -> Tensor:
    """Return a page-locked copy of ``x``, from which a copy to the GPU runs asynchronously.

    The only place evaluation pins memory (tests replace it to count what would be pinned).
    """
    return x.pin_memory()


def to_device(x: Tensor, device: torch.device, pin: bool) -> Tensor:
    """``x`` on ``device``; through pinned memory and asynchronously when ``pin``."""
    return pin_batch(x).to(device, non_blocking=True) if pin else x.to(device)


class _Batches(Sampler[list[int]]):
    """The batches of the next pass, set in the main process before each (see EvalLoader)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EvalLoader:
    """One data loader for every evaluation pass of a job: its workers start once.

    Args:
        dataset: Items ``(image (3, S, S) uint8 or float in [0, 1], int64 label)``.
        workers: Data-loading processes (0: in this process); they persist between passes.
        worker_init_fn: Run in each worker process as it starts.
    """

    def __init__(
        self,
        dataset: Dataset,
        workers: int = 0,
        worker_init_fn: Callable[[int], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.wait_seconds = 0.0  # time the caller spent waiting for batches
        self._sampler = _Batches()
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=worker_init_fn,
        )

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def read(self, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
        """One pass: ``(images (B, 3, S, S), labels (B,))`` of each index list, in order."""
        self._sampler.batches = [list(map(int, b)) for b in batches]
        it = iter(self._loader)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            self.wait_seconds += time.perf_counter() - t0
            if batch is None:
                return
            yield batch


class KeptBatches:
    """Decoded batches kept in pageable memory while the whole set fits ``limit`` bytes.

    Args:
        n: Images in the whole set.
        limit: Bytes (default :data:`CACHE_BYTES`).
    """

    def __init__(self, n: int, limit: int | None = None) -> None:
        self.n, self.limit = n, CACHE_BYTES if limit is None else limit
        self.batches: list[Batch] | None = []  # None: too large, not kept

    def through(self, source: Iterable[Batch]) -> Iterator[Batch]:
        """Yield ``source``, keeping each batch (copied out of a worker's shared memory)."""
        for images, labels in source:
            if self.batches is not None and images.nbytes * self.n > self.limit * len(images):
                self.batches = None  # too large: read again
            elif self.batches is not None:
                self.batches.append((images.clone(), labels.clone()))
            yield images, labels
