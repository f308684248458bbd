"""Registry of datasets: each name's reader module, and how to write its miniature and prepare it.

Every dataset is listed here by hand (as ``torchvision.datasets`` lists its readers): to add one,
write its module (``prepare`` and ``write_demo_raw``) and add a line to :data:`_REGISTRY`. The
reader modules know nothing of the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robustkd.data import camelyon17, cifar, imagenet100, resisc45, stl10

__all__ = ["DatasetHandler", "available_datasets", "get_dataset"]


@dataclass(frozen=True)
class DatasetHandler:
    """The two entry points of a dataset module.

    Attributes:
        name: The dataset's name in config and paths (``cifar10``, ``imagenet100``, ...).
        prepare: ``prepare(root, out_dir, *, download=False, md5_overrides=None,
            provenance=None, **options) -> Path`` reads the official raw format under ``root``
            and writes ``out_dir`` (see :mod:`robustkd.data.prepared`). ``md5_overrides``
            maps raw file names to the md5 to expect instead of the official one (the
            miniature's archives are not the official ones; its generator writes their sums to
            ``MD5SUMS``).
        write_demo_raw: ``write_demo_raw(out_dir, *, seed, **spec) -> list[Path]`` writes
            miniature raw data in the official format into ``out_dir``.
    """

    name: str
    prepare: Callable[..., Path]
    write_demo_raw: Callable[..., list[Path]]


_REGISTRY: dict[str, DatasetHandler] = {
    h.name: h
    for h in (
        DatasetHandler("camelyon17", camelyon17.prepare, camelyon17.write_demo_raw),
        DatasetHandler("cifar10", cifar.prepare_cifar10, cifar.write_demo_raw_cifar10),
        DatasetHandler("cifar100", cifar.prepare_cifar100, cifar.write_demo_raw_cifar100),
        DatasetHandler("imagenet100", imagenet100.prepare, imagenet100.write_demo_raw),
        DatasetHandler("resisc45", resisc45.prepare, resisc45.write_demo_raw),
        DatasetHandler("stl10", stl10.prepare_stl10, stl10.write_demo_raw_stl10),
    )
}


def get_dataset(name: str) -> DatasetHandler:
    """Return the handler of dataset ``name``.

    Raises:
        KeyError: Unknown dataset (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_REGISTRY)}") from None


def available_datasets() -> list[str]:
    """Return the registered dataset names, sorted."""
    return sorted(_REGISTRY)
