"""The corruption registry, the base class, 8-bit output, random draws and the mixture.

Part of :mod:`robustkd.corruptions` (its docstring gives the conventions).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

# The benchmark's 15 corruptions (published order) and the extra ones we implement.
from robustkd.corruption_names import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from robustkd.distortions import Distortion

SEVERITIES = (1, 2, 3, 4, 5)

#: The benchmark protocols and the image side their released generators are written for:
#: ``cifar10c`` is ``make_cifar_c.py`` (32 px), ``imagenetc`` is ``make_imagenet_c.py``
#: (224 px, after Resize(256) + CenterCrop(224)), both in hendrycks/robustness.
PROTOCOLS: dict[str, int] = {"cifar10c": 32, "imagenetc": 224}
DEFAULT_PROTOCOL = "cifar10c"

_REGISTRY: dict[str, type[Corruption]] = {}
_FAMILY: dict[str, str] = {}
FAMILIES = ("noise", "blur", "weather", "digital")

C = TypeVar("C", bound="type[Corruption]")


# ----------------------------------------------------------------------------------------------
# Base class and registry
# ----------------------------------------------------------------------------------------------


class Corruption(Distortion):
    """A benchmark corruption at one severity (1-5); subclasses hold the published parameters.

    One implementation serves both protocols: ``PARAMS`` are the CIFAR-10-C parameters
    (``make_cifar_c.py``, 32x32 images), ``IMAGENET_PARAMS`` the ImageNet-C ones
    (``make_imagenet_c.py``, 224x224 images); the algorithm is the same, only the constants
    differ (where a released generator also changes a step, the class's docstring says so).

    Args:
        severity: 1 (mildest) to 5 (strongest).
        protocol: ``cifar10c`` (default) or ``imagenetc`` (:data:`PROTOCOLS`).

    Raises:
        ValueError: A severity outside 1-5 or an unknown protocol (named).
    """

    #: Per-severity parameters for 32x32 images (CIFAR-10-C), severity 1 first.
    PARAMS: ClassVar[tuple[Any, ...]] = ()
    #: Per-severity parameters for 224x224 images (ImageNet-C), severity 1 first.
    IMAGENET_PARAMS: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, severity: int, protocol: str = DEFAULT_PROTOCOL) -> None:
        if isinstance(severity, bool) or severity not in SEVERITIES:
            raise ValueError(f"corruption {self.family!r}: severity must be 1-5, got {severity!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"corruption {self.family!r}: unknown protocol {protocol!r} "
                f"(known: {sorted(PROTOCOLS)})"
            )
        table = self.PARAMS if protocol == "cifar10c" else self.IMAGENET_PARAMS
        if len(table) != len(SEVERITIES):
            raise ValueError(f"corruption {self.family!r} has no {protocol} parameters")
        self.severity = int(severity)
        self.protocol = protocol

    @property
    def c(self) -> Any:  # noqa: ANN401 - a float or a tuple, as in make_*_c.py
        """The published parameter(s) of this severity and protocol (``c`` in ``make_*_c.py``)."""
        table = self.PARAMS if self.protocol == "cifar10c" else self.IMAGENET_PARAMS
        return table[self.severity - 1]

    def params(self) -> dict[str, Any]:
        """Return ``{"severity": severity}`` (plus ``protocol`` when not CIFAR-10-C)."""
        if self.protocol == DEFAULT_PROTOCOL:
            return {"severity": self.severity}
        return {"severity": self.severity, "protocol": self.protocol}


def register_corruption(name: str, family: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`Corruption` under ``name``.

    Args:
        name: The corruption's name (``gaussian_noise``).
        family: ``noise``, ``blur``, ``weather`` or ``digital`` (the benchmark's groups).

    Returns:
        The decorator.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown corruption family {family!r} (known: {FAMILIES})")

    def decorator(cls: C) -> C:
        if name in _REGISTRY:
            raise ValueError(f"corruption {name!r} is already registered")
        cls.family = name
        _REGISTRY[name] = cls
        _FAMILY[name] = family
        return cls

    return decorator


def available_corruptions() -> list[str]:
    """Names of the registered corruptions: the benchmark's in order, then the extras."""
    order = [*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS]
    return [n for n in order if n in _REGISTRY] + sorted(set(_REGISTRY) - set(order))


def corruption_family(name: str) -> str:
    """The benchmark group of a corruption: ``noise``, ``blur``, ``weather`` or ``digital``."""
    if name not in _FAMILY:
        raise ValueError(f"unknown corruption {name!r} (available: {available_corruptions()})")
    return _FAMILY[name]


def create_corruption(name: str, severity: int, protocol: str = DEFAULT_PROTOCOL) -> Corruption:
    """Build a registered corruption.

    Args:
        name: One of :func:`available_corruptions`.
        severity: 1-5.
        protocol: ``cifar10c`` (default: the CIFAR-10-C parameters) or ``imagenetc``.

    Returns:
        The corruption.

    Raises:
        ValueError: Unknown name, invalid severity or unknown protocol (named).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown corruption {name!r} (available: {available_corruptions()})")
    return _REGISTRY[name](severity, protocol)


def protocol_for_size(size: int) -> str:
    """The benchmark protocol whose released generator is written for ``size`` x ``size`` images.

    Args:
        size: Image side in pixels (the backbone's input size).

    Returns:
        ``cifar10c`` for 32, ``imagenetc`` for 224.

    Raises:
        ValueError: Any other size: neither generator's constants are published for it, so
            the caller must choose a protocol explicitly (the error says so).
    """
    for name, side in PROTOCOLS.items():
        if int(size) == side:
            return name
    raise ValueError(
        f"no corruption protocol is published for {size} px images (CIFAR-10-C: 32, "
        f"ImageNet-C: 224); set the protocol explicitly"
    )


def corruption_key(name: str) -> int:
    """A stable integer of a corruption's name (a key of its random streams)."""
    return zlib.crc32(name.encode())


def to_uint8(x: Tensor) -> np.ndarray:
    """Images (B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3), truncating like ``np.uint8(255 x)``.

    A tolerance of 1e-4 absorbs float round-off, so a pixel that is exactly ``k / 255`` maps
    back to ``k``.
    """
    x = (x.detach().float().clamp(0, 1) * 255.0 + 1e-4).floor().clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Helpers: random draws, filters as matrices, resampling
# ----------------------------------------------------------------------------------------------


def _rand(shape: Sequence[int], x: Tensor, g: torch.Generator | None) -> Tensor:
    return torch.rand(tuple(shape), generator=g, device=x.device, dtype=torch.float32)


def _randn(shape: Sequence[int], x: Tensor, g: torch.Generator | None) -> Tensor:
    return torch.randn(tuple(shape), generator=g, device=x.device, dtype=x.dtype)


def _uniform(
    low: float, high: float, shape: Sequence[int], x: Tensor, g: torch.Generator | None
) -> Tensor:
    return low + (high - low) * _rand(shape, x, g)


def _randint(low: int, high: int, shape: Sequence[int], x: Tensor, g: torch.Generator | None):  # noqa: ANN202
    return torch.randint(low, high, tuple(shape), generator=g, device=x.device)


# ----------------------------------------------------------------------------------------------
# A random mixture (CRAFT's corrupted training views)
# ----------------------------------------------------------------------------------------------


class CorruptionMix:
    """Corrupt each image with a corruption and a severity drawn at random from given sets.

    CRAFT's corrupted views: every image of the batch draws its own (corruption, severity);
    images sharing a draw are corrupted together, in a fixed order, so the result is a
    deterministic function of the generator's seed.

    Args:
        names: Corruptions to draw from (uniformly).
        severities: Severities to draw from (uniformly).
    """

    def __init__(self, names: Sequence[str], severities: Sequence[int] = SEVERITIES) -> None:
        if not names:
            raise ValueError("CorruptionMix needs at least one corruption")
        self.names, self.severities = list(names), [int(s) for s in severities]
        self.ops = {(n, s): create_corruption(n, s) for n in self.names for s in self.severities}

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a corrupted copy of ``x`` (B, C, H, W) in [0, 1]."""
        b = x.shape[0]
        which = _randint(0, len(self.names), (b,), x, generator).cpu()
        sev = _randint(0, len(self.severities), (b,), x, generator).cpu()
        out = torch.empty_like(x)
        for k, name in enumerate(self.names):
            for j, s in enumerate(self.severities):
                idx = torch.nonzero((which == k) & (sev == j)).flatten()
                if len(idx):
                    out[idx.to(x.device)] = self.ops[(name, s)](x[idx.to(x.device)], generator)
        return out
