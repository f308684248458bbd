"""Image pipelines of the engines: seeded, resumable augmentation and label fractions.

Every random choice is a function of ``(seed, epoch, index)``, never of a global RNG or of the
number of data-loader workers, so a run resumed at any step sees exactly the batches an
uninterrupted run would have seen. Training passes the epoch with each index
(:class:`EpochBatches`), so one loader with persistent workers serves every epoch.

- Train view: RandomResizedCrop + horizontal flip (the clean view; the distortion is applied
  to this same crop on the device, so clean and distorted views share geometry).
- Eval view: Resize(size * 256 / 224) + CenterCrop(size), as the baselines evaluate.

Both views yield uint8 pixels, decoded with as little work as possible
(:mod:`robustkd.engine.decode`); the consumer turns a batch into float in [0, 1] on its device
with :func:`~robustkd.engine.decode.to_unit_float` before distorting and normalising it.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from robustkd.data.prepared import PreparedDataset
from robustkd.engine.decode import ImageSource, eval_crop, to_unit_float, train_crop
from robustkd.engine.decode import crop_box as _crop_box
from robustkd.engine.signals import shielded_worker_init
from robustkd.labelfractions import kept_per_class
from robustkd.provenance import sha256_file

__all__ = [
    "EpochBatches",
    "ImageSet",
    "ViewConfig",
    "closing_loader",
    "epoch_batches",
    "epoch_loader",
    "label_fraction_indices",
    "load_image_set",
    "make_loader",
    "rng_for",
    "to_unit_float",
]

_PIXELS = "uint8-v2"
"""Tag of the pixel pipeline in :meth:`ImageSet.fingerprint` (``v1``: the float32 path before
issue 16): a checkpoint written on other pixels is not resumed."""


def rng_for(*keys: int) -> np.random.Generator:
    """Return a numpy Generator determined by integer keys (e.g. seed, epoch, index).

    Args:
        *keys: Non-negative integers.

    Returns:
        A generator whose stream depends only on ``keys``.
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


@dataclass(frozen=True)
class ViewConfig:
    """How images are turned into model inputs.

    Attributes:
        size: Side of the model's input in pixels.
        crop_scale: Area range of RandomResizedCrop (torchvision default (0.08, 1.0)).
        crop_ratio: Aspect ratio range of RandomResizedCrop.
        hflip: Whether training flips horizontally with probability 0.5.
        decode: Where training decodes JPEG files: ``"cpu"`` (loader workers) or ``"device"``
            (on a CUDA device, :mod:`robustkd.engine.devicedecode`; the CPU elsewhere).
    """

    size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    decode: str = field(default="cpu", repr=False)  # in the fingerprint only when not "cpu"


class ImageSet(Dataset):
    """A split of a prepared dataset as model inputs: uint8 (3, S, S) in [0, 255], not normalised.

    Images are kept decoded in memory as uint8 (the miniature, small datasets), read from the
    prepared packed arrays, or decoded from the prepared files on access (paper scale), in each
    case with the least work the view needs (:mod:`robustkd.engine.decode`). ``set_epoch``
    selects the augmentation stream. Batches become float in [0, 1] on the device:
    :func:`to_unit_float`.
    """

    def __init__(
        self,
        prepared: PreparedDataset,
        split: str,
        view: ViewConfig,
        *,
        train: bool,
        seed: int = 0,
        preload_size: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        """Create the set.

        Args:
            prepared: The prepared dataset.
            split: Its split to use.
            view: Input size and augmentation.
            train: Random crop + flip (True) or resize + center crop (False).
            seed: Seed of the augmentation stream.
            preload_size: Decode every image once, resized to this square size, and keep it in
                memory; None streams images from disk.
            indices: Positions within the split to keep (a label fraction); default all.
        """
        self.prepared = prepared
        self.rows = prepared.indices(split)
        labels = prepared.labels(split)
        keep = np.arange(len(self.rows)) if indices is None else np.asarray(indices, dtype=int)
        self.rows = [self.rows[i] for i in keep]
        self.labels = torch.as_tensor(labels[keep])
        self.view, self.train, self.seed, self.epoch = view, train, seed, 0
        self.cache: torch.Tensor | None = None  # uint8 (N, S, S, 3)
        if preload_size is not None:
            imgs = [np.asarray(prepared.image(r).resize((preload_size,) * 2)) for r in self.rows]
            self.cache = torch.from_numpy(np.stack(imgs))

    def __len__(self) -> int:
        return len(self.rows)

    def derive(self, *, seed: int | None = None, indices: Sequence[int] | None = None) -> ImageSet:
        """Return a view of this set with another seed and/or a subset (shares the cache).

        Args:
            seed: The new augmentation seed (default: unchanged).
            indices: Positions within this set to keep (default: all).

        Returns:
            A new set at epoch 0; decoded images are shared, not copied.
        """
        out = copy.copy(self)
        out.epoch = 0
        if seed is not None:
            out.seed = seed
        if indices is not None:
            keep = np.asarray(indices, dtype=int)
            out.rows = [self.rows[i] for i in keep]
            out.labels = self.labels[keep]
            out.cache = None if self.cache is None else self.cache[keep]
        return out

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = epoch

    def fingerprint(self) -> str:
        """A digest of what this set yields: the prepared manifest, the rows, the view, the seed.

        Training stores it in checkpoints, so a checkpoint is not resumed on other data.
        """
        h = hashlib.sha256()
        for name in ("manifest.csv", "classes.txt"):
            h.update(sha256_file(self.prepared.root / name).encode())
        h.update(repr((self.rows, self.view, self.train, self.seed)).encode())
        h.update(b"" if self.cache is None else repr(tuple(self.cache.shape)).encode())
        h.update(_PIXELS.encode() if self.view.decode == "cpu" else b"decode=device")
        return h.hexdigest()

    def _source(self, i: int) -> ImageSource:
        if self.cache is not None:
            return ImageSource.from_array(self.cache[i])  # (S, S, 3)
        row = self.prepared.rows[self.rows[i]]
        if row.index >= 0:  # a packed array: no decode
            return ImageSource.from_array(np.asarray(self.prepared.image(self.rows[i])))
        return ImageSource.from_file(os.path.join(self.prepared.root, row.path))

    def geometry(
        self, epoch: int, i: int, h: int, w: int
    ) -> tuple[tuple[int, int, int, int], bool]:
        """The train view's draws for image ``i`` of size ``h`` x ``w`` px at ``epoch``.

        Returns:
            ``((top, left, height, width), flip)``: the RandomResizedCrop box in full-resolution
            pixels, then the horizontal flip, both from ``(seed, epoch, i)`` alone (the draws of
            the former float path: identical crops), whichever path decodes the image.
        """
        rng = rng_for(self.seed, epoch, i)
        box = _crop_box(rng, h, w, self.view.crop_scale, self.view.crop_ratio)
        return box, bool(self.view.hflip and rng.random() < 0.5)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return image ``i`` of the view and its label.

        Args:
            key: Position ``i`` in the set, at the epoch of :meth:`set_epoch`; or
                ``(epoch, i)``, as :class:`EpochBatches` gives it: the epoch travels with the
                index, so persistent loader workers (copies of the set made once) draw the
                crops of the right epoch.

        Returns:
            ``(image, label)``: uint8 (3, S, S) and an int64 scalar.

        Raises:
            DataError: The image file cannot be read or decoded.
        """
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        src = self._source(i)
        size = self.view.size
        if self.train:
            box, flip = self.geometry(epoch, i, src.height, src.width)
            img = train_crop(src, box, size)
            if flip:
                img = img.flip(-1)
        else:
            img = eval_crop(src, int(size * 256 / 224), size)
        return img, self.labels[i]


# The name the jobs build a set by; the same class, so one signature to keep.
load_image_set = ImageSet


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, *, shuffle: bool = True, drop_last: bool = True
) -> list[list[int]]:
    """Return the batches of one epoch as index lists, a function of (seed, epoch) only.

    Args:
        n: Dataset length.
        batch_size: Images per batch.
        seed: Run seed.
        epoch: Epoch number.
        shuffle: Permute the order (training) or keep it (evaluation).
        drop_last: Drop the last incomplete batch (training keeps batch statistics even).

    Returns:
        The list of batches.
    """
    order = rng_for(seed, epoch, 0xBA7C).permutation(n) if shuffle else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last and n >= batch_size else n
    return [order[i : i + batch_size].tolist() for i in range(0, stop, batch_size)]


def label_fraction_indices(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Pick a stratified, seeded, nested subset holding ``fraction`` of each class.

    Each class's samples are put in an order drawn from ``(seed, class)`` alone, and the first
    ``max(1, round(fraction * n_class))`` are kept: a larger fraction therefore contains every
    smaller one, and the subset is reproducible from the seed.

    Args:
        labels: Class of each sample.
        fraction: In (0, 1].
        seed: The subset's seed.

    Returns:
        Sorted positions of the kept samples.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction {fraction} outside (0, 1]")
    labels = np.asarray(labels)
    keep: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[rng_for(seed, int(c), 0xF4AC).permutation(len(members))]
        keep.append(order[: kept_per_class(fraction, len(members))])
    return np.sort(np.concatenate(keep))


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """A batch sampler whose batches are set per epoch, as ``(epoch, index)`` keys.

    It lives in the main process, where a DataLoader iterates its batch sampler, so one loader
    with persistent workers serves every epoch: :meth:`set` before each pass. The keys carry the
    epoch to the workers' copies of the dataset (see :meth:`ImageSet.__getitem__`).
    """

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def set(self, epoch: int, batches: Sequence[Sequence[int]]) -> None:
        """Make the next pass yield ``batches`` (index lists, order kept) of ``epoch``."""
        self.batches = [[(epoch, int(i)) for i in b] for b in batches]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def epoch_loader(
    dataset: Dataset,
    sampler: EpochBatches,
    workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """One loader for every epoch of a training run: its batches come from ``sampler``.

    Worker processes (``workers`` > 0) persist across epochs instead of restarting for each
    pass; every random choice stays a function of (seed, epoch, index), so the batches are those
    of ``workers=0``, whatever the number of workers. The workers ignore the job's preemption
    signals (:func:`~robustkd.engine.signals.shielded_worker_init`): the training process
    decides, at its next step, what the signal means, and stops them when it stops.

    Args:
        dataset: A set indexed by ``(epoch, index)`` keys (:class:`ImageSet`).
        sampler: Its batches; :meth:`EpochBatches.set` them before each pass.
        workers: Data-loading processes (0: in this process).
        pin_memory: Pin host memory for faster, asynchronous copies to a GPU (CUDA only).
        collate_fn: How items become a batch (default: stacked; the device decode's own).

    Returns:
        A loader yielding ``(images (B, 3, S, S), labels (B,))`` per pass (by default).
    """
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        persistent_workers=workers > 0,
        worker_init_fn=shielded_worker_init(),
    )


@contextmanager
def closing_loader(loader: DataLoader) -> Iterator[DataLoader]:
    """Use ``loader`` in a ``with`` block whose end stops its worker processes, however it ends.

    The workers ignore the job's preemption signals, so their main process must stop them
    itself: a persistent worker still alive when the interpreter exits (an exception's traceback
    keeps the loader alive) would make multiprocessing's exit handler, which stops workers with
    SIGTERM, wait for it forever. On leaving the block each worker is asked to finish (torch's
    own shutdown); one still running after that is killed (SIGKILL) and waited for.

    Args:
        loader: A loader, e.g. from :func:`epoch_loader` (any number of workers).

    Yields:
        ``loader``.
    """
    try:
        yield loader
    finally:
        # torch has no public call that stops persistent workers: the live iterator is private.
        iterator = getattr(loader, "_iterator", None)
        loader._iterator = None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            for worker in iterator._workers:
                if worker.is_alive():
                    worker.kill()
                    worker.join()


def make_loader(
    dataset: ImageSet, batches: Sequence[Sequence[int]], workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Wrap fixed batches of ``dataset`` in a DataLoader (workers decode in parallel).

    As in :func:`epoch_loader`, the workers ignore the job's preemption signals; they end with
    the loader or with their main process.

    Args:
        dataset: The image set (its epoch already set).
        batches: Index lists, e.g. from :func:`epoch_batches`; order is preserved.
        workers: Data-loading processes (0: in this process).
        pin_memory: Pin host memory for faster copies to a GPU.

    Returns:
        A loader yielding ``(images (B, 3, S, S), labels (B,))``.
    """
    return DataLoader(
        dataset,
        batch_sampler=list(batches),
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=shielded_worker_init(),
    )
