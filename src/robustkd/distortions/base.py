"""Base class, registry and builder of the image distortions; batch sharding.

A distortion family subclasses :class:`Distortion` and registers itself by name with
:func:`register_distortion` (in its own module: ``mask``, ``noise``, ``blur``, ``mixed``);
:func:`create_distortion` builds one from its config entry. Inside :func:`batch_shard` a random
distortion draws for the whole global batch and keeps this process's slice.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

__all__ = [
    "DISTORTION_META",
    "Distortion",
    "available_families",
    "batch_shard",
    "check_number",
    "compute_dtype",
    "create_distortion",
    "register_distortion",
    "strip_distortion_meta",
]

_REGISTRY: dict[str, type[Distortion]] = {}

D = TypeVar("D", bound="type[Distortion]")

# (rank, world): this process holds slice ``rank`` of ``world`` equal slices of the batch.
_SHARD: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar(
    "robustkd_batch_shard", default=(0, 1)
)


@contextlib.contextmanager
def batch_shard(rank: int, world: int) -> Iterator[None]:
    """Within this block, batches are slice ``rank`` of ``world`` equal slices of a global batch.

    Random distortions then draw their randomness for the global batch (``world`` times the
    batch they are given) and return the given slice's part, so the result does not depend on
    how many processes share the batch.

    Args:
        rank: This process's slice, 0 .. world - 1.
        world: Number of slices (processes).

    Raises:
        ValueError: ``rank`` outside ``[0, world)``.
    """
    if not 0 <= rank < world:
        raise ValueError(f"batch shard rank {rank} outside [0, {world})")
    token = _SHARD.set((rank, world))
    try:
        yield
    finally:
        _SHARD.reset(token)


# ----------------------------------------------------------------------------------------------
# Base class and registry
# ----------------------------------------------------------------------------------------------


class Distortion(abc.ABC):
    """A distortion of a batch of images; subclasses are registered by family name.

    The constructor's keyword arguments are the family's parameters: a config entry is
    ``{"family": <family>, **parameters}`` and :meth:`describe` returns it back.
    """

    family: ClassVar[str] = ""
    #: Whether the output depends on the generator (repeated evaluation is then meaningful).
    is_random: ClassVar[bool] = True

    @abc.abstractmethod
    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Distort a validated (B, C, H, W) floating-point batch; return the same shape."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Return the family's parameters, as given to the constructor."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Distort a batch of images.

        Args:
            x: Images of shape (B, C, H, W) (or a single (C, H, W) image), floating point,
                pixels in [0, 1], on any device.
            generator: Source of randomness, on ``x.device``; ``None`` uses the global RNG.
                Deterministic distortions ignore it.

        Returns:
            The distorted images, of the shape, dtype and device of ``x``.

        Raises:
            ValueError: If ``x`` is not a 3-D or 4-D floating-point tensor.
        """
        if not torch.is_floating_point(x):
            raise ValueError(
                f"{self.family} distortion: expected floating-point images, got {x.dtype}"
            )
        if x.ndim == 3:
            return self._apply(x.unsqueeze(0), generator).squeeze(0)  # (C, H, W)
        if x.ndim != 4:
            raise ValueError(
                f"{self.family} distortion: expected images of shape (B, C, H, W), "
                f"got {tuple(x.shape)}"
            )
        rank, world = _SHARD.get()
        if world > 1 and self.is_random:
            b = x.shape[0]
            full = x.new_zeros((world * b, *x.shape[1:]))  # (world * B, C, H, W)
            full[rank * b : (rank + 1) * b] = x
            return self._apply(full, generator)[rank * b : (rank + 1) * b]
        return self._apply(x, generator)

    def describe(self) -> dict[str, Any]:
        """Return the config entry that rebuilds this distortion with :func:`create_distortion`."""
        return {"family": self.family, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Distortion) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.describe().items())))


def register_distortion(family: str) -> Callable[[D], D]:
    """Class decorator registering a :class:`Distortion` subclass under ``family``.

    Args:
        family: The name used in config entries (``{"family": family, ...}``).

    Returns:
        The decorator; it sets ``cls.family`` and returns the class unchanged otherwise.

    Raises:
        ValueError: If ``family`` is already registered.
    """

    def decorator(cls: D) -> D:
        if family in _REGISTRY:
            raise ValueError(f"distortion family {family!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Distortion)):
            raise TypeError(f"@register_distortion({family!r}) needs a Distortion subclass")
        cls.family = family
        _REGISTRY[family] = cls
        return cls

    return decorator


def available_families() -> list[str]:
    """Return the registered distortion families, sorted."""
    return sorted(_REGISTRY)


#: Keys of a distortion's config entry that describe it rather than parameterise it.
DISTORTION_META = ("stands_for",)


def strip_distortion_meta(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return a config entry without its descriptive keys (``stands_for``), for the builder."""
    return {k: v for k, v in spec.items() if k not in DISTORTION_META}


def _parameters(cls: type[Distortion]) -> tuple[list[str], list[str]]:
    """Return the (required, optional) keyword parameters of a distortion's constructor."""
    required, optional = [], []
    for name, par in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        (required if par.default is par.empty else optional).append(name)
    return required, optional


def create_distortion(spec: Mapping[str, Any]) -> Distortion:
    """Build a distortion from a config entry.

    Args:
        spec: ``{"family": name, **parameters}``, e.g. ``{"family": "mask", "p": 0.9}``,
            ``{"family": "noise", "sigma": 0.5}`` or
            ``{"family": "blur", "kernel": 37, "sigma": 9.0}``.

    Returns:
        The distortion.

    Raises:
        ValueError: If the family is unknown, a parameter is missing, unexpected or invalid;
            the message names it.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"distortion spec must be a mapping, got {type(spec).__name__}")
    if "family" not in spec:
        raise ValueError(f"distortion spec {dict(spec)!r} lacks the key 'family'")
    family = spec["family"]
    if family not in _REGISTRY:
        raise ValueError(
            f"unknown distortion family {family!r} (available: {available_families()})"
        )
    cls = _REGISTRY[family]
    params = {k: v for k, v in spec.items() if k != "family"}
    required, optional = _parameters(cls)
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"distortion {family!r}: missing parameter(s) {missing}")
    extra = sorted(k for k in params if k not in required and k not in optional)
    if extra:
        raise ValueError(
            f"distortion {family!r}: unexpected parameter(s) {extra} "
            f"(expected: {required + optional})"
        )
    return cls(**params)


def check_number(family: str, name: str, value: Any, low: float, high: float = math.inf) -> float:
    """Check that ``value`` is a real number with ``low <= value <= high``; return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"distortion {family!r}: parameter {name!r} must be a number, got {value!r}"
        )
    value = float(value)
    if not low <= value <= high:
        raise ValueError(
            f"distortion {family!r}: parameter {name!r} must lie in [{low}, {high}], got {value}"
        )
    return value


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float16/bfloat16 are processed in float32; float32 and float64 as they are."""
    return torch.promote_types(dtype, torch.float32)
