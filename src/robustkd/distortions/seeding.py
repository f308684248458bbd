"""Randomness of the distortions: generators seeded by integer keys, repeatable evaluation."""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from robustkd.distortions.base import Distortion, create_distortion

__all__ = ["apply_distortion", "seeded_generator"]


def seeded_generator(device: torch.device | str, *keys: int) -> torch.Generator:
    """Return a generator on ``device`` seeded by hashing integer ``keys``.

    The seed is the first 63 bits of the SHA-256 of the keys written in decimal, joined by
    commas, so that e.g. ``seeded_generator(dev, run_seed, epoch, step)`` gives every training
    step its own well-mixed stream, and a run resumed at any step redraws exactly the same
    distortions. Different key tuples give unrelated streams, including tuples that differ only
    by trailing zeros (unlike ``numpy.random.SeedSequence``, which pads with zeros).

    Args:
        device: Device of the generator; must match the device of the tensors it feeds.
        *keys: One or more integers.

    Returns:
        The seeded generator.

    Raises:
        ValueError: If no key is given or a key is not an integer.
    """
    if not keys:
        raise ValueError("seeded_generator needs at least one integer key")
    ints = []
    for key in keys:
        if isinstance(key, bool):
            raise ValueError(f"seeded_generator keys must be integers, got {key!r}")
        try:
            ints.append(operator.index(key))
        except TypeError:
            raise ValueError(f"seeded_generator keys must be integers, got {key!r}") from None
    digest = hashlib.sha256(",".join(map(str, ints)).encode()).digest()
    seed = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    return torch.Generator(device=device).manual_seed(seed)


def apply_distortion(
    x: Tensor, spec_or_distortion: Mapping[str, Any] | Distortion, seed: int
) -> Tensor:
    """Distort ``x`` with a fresh generator on ``x.device`` seeded with ``seed``.

    For repeatable evaluation: the same ``x``, distortion and seed always give the same output
    (on the same kind of device).

    Args:
        x: Images of shape (B, C, H, W), floating point, pixels in [0, 1].
        spec_or_distortion: A config entry (see :func:`create_distortion`) or a distortion.
        seed: Seed of the generator.

    Returns:
        The distorted images, of the shape, dtype and device of ``x``.
    """
    distortion = (
        spec_or_distortion
        if isinstance(spec_or_distortion, Distortion)
        else create_distortion(spec_or_distortion)
    )
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return distortion(x, generator=generator)
