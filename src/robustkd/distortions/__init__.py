"""Image distortions of the paper: random pixel masking, Gaussian noise and Gaussian blur.

One more family, ``mixed`` (one of several settings per image, beyond the paper), lives in
:mod:`robustkd.distortions.mixed`. Each family is a module of this package that registers
itself (:func:`register_distortion`, :mod:`robustkd.distortions.base`); importing the package
registers them all, and this module re-exports the public names:

- :mod:`~robustkd.distortions.base`: :class:`Distortion`, the registry, the builder, sharding;
- :mod:`~robustkd.distortions.mask`, :mod:`~robustkd.distortions.noise`,
  :mod:`~robustkd.distortions.blur`, :mod:`~robustkd.distortions.mixed`: the families;
- :mod:`~robustkd.distortions.seeding`: seeded generators, repeatable evaluation.

A distortion is built from its config entry (``config.yaml``, key ``distortions``)::

    blur = create_distortion({"family": "blur", "kernel": 37, "sigma": 9.0})
    xd = blur(x, generator=g)  # x: (B, C, H, W) float pixels in [0, 1], any device

Distortions act on pixels in [0, 1] after ``ToTensor`` and before ``Normalize``, as in the
Contrastive Inversion code the paper follows (docs/assumptions.md). Random ones draw
from the ``generator`` passed in (or the global RNG when it is ``None``), so that evaluation
repeats (:func:`apply_distortion`) and resumed training steps (:func:`seeded_generator`) see
exactly the same distortions. Random streams depend on the device: a seed gives the same
distortion on every run on the same kind of device, not across CPU and CUDA.

Half-precision input is processed in float32 and cast back; float64 stays float64.

In data-parallel training each process holds one slice of the global batch. Inside
:func:`batch_shard` a random distortion draws for the whole global batch and keeps the slice,
so an image is distorted exactly as in a single process at the same global batch.

The family modules import only :mod:`robustkd.distortions.base` (and each other's public
names), never this package, so the package has no import circle.
"""

from __future__ import annotations

from robustkd.distortions import mixed as _mixed  # noqa: F401  (registers ``mixed``)
from robustkd.distortions.base import (
    Distortion,
    available_families,
    batch_shard,
    create_distortion,
    register_distortion,
    strip_distortion_meta,
)
from robustkd.distortions.blur import GaussianBlur, blur_matrix, gaussian_kernel1d
from robustkd.distortions.mask import RandomMask
from robustkd.distortions.noise import GaussianNoise
from robustkd.distortions.seeding import apply_distortion, seeded_generator

__all__ = [
    "Distortion",
    "GaussianBlur",
    "GaussianNoise",
    "RandomMask",
    "apply_distortion",
    "available_families",
    "batch_shard",
    "blur_matrix",
    "create_distortion",
    "gaussian_kernel1d",
    "register_distortion",
    "seeded_generator",
    "strip_distortion_meta",
]
