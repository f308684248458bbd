"""Registry of datasets: how to write each one's miniature raw data and how to prepare it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["DatasetHandler", "available_datasets", "get_dataset", "register_dataset"]


class PrepareFn(Protocol):
    """Signature of a dataset's ``prepare`` function."""

    def __call__(
        self,
        root: Path,
        out_dir: Path,
        *,
        download: bool = False,
        md5_overrides: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Path:
        """Prepare raw data under ``root`` into the prepared-dataset folder ``out_dir``."""
        ...


@dataclass(frozen=True)
class DatasetHandler:
    """The two entry points of a dataset module.

    Attributes:
        name: The dataset's name in config and paths (``cifar10``, ``imagenet100``, ...).
        prepare: Reads the official raw format under ``root`` and writes ``out_dir`` (see
            :mod:`robustkd.data.prepared`). ``md5_overrides`` maps raw file names to the md5
            to expect instead of the official one (the miniature's archives are not the
            official ones; its generator writes their sums to ``MD5SUMS``).
        write_demo_raw: ``write_demo_raw(out_dir, *, seed, **spec) -> list[Path]`` writes
            miniature raw data in the official format into ``out_dir``.
    """

    name: str
    prepare: PrepareFn
    write_demo_raw: Callable[..., list[Path]]


_REGISTRY: dict[str, DatasetHandler] = {}


def register_dataset(
    name: str, *, prepare: PrepareFn, write_demo_raw: Callable[..., list[Path]]
) -> DatasetHandler:
    """Register a dataset's handler under ``name`` and return it.

    Raises:
        ValueError: The name is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} registered twice")
    handler = DatasetHandler(name, prepare, write_demo_raw)
    _REGISTRY[name] = handler
    return handler


def get_dataset(name: str) -> DatasetHandler:
    """Return the handler of dataset ``name``.

    Raises:
        KeyError: Unknown dataset (the message lists the known ones).
    """
    import robustkd.data  # noqa: F401  (imports every dataset module, which registers itself)

    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_REGISTRY)}") from None


def available_datasets() -> list[str]:
    """Return the registered dataset names, sorted."""
    import robustkd.data  # noqa: F401

    return sorted(_REGISTRY)
