"""Noise corruptions: Gaussian, shot and impulse noise (and the extra speckle noise).

Part of :mod:`robustkd.corruptions`: parameters from ``make_cifar_c.py`` (``PARAMS``) and
``make_imagenet_c.py`` (``IMAGENET_PARAMS``); its
docstring says where and why we follow the released code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustkd.corruptions.core import Corruption, _rand, _randn, register_corruption

# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------


@register_corruption("gaussian_noise", "noise")
class GaussianNoiseC(Corruption):
    """``x + N(0, c^2)`` per pixel and channel, clipped."""

    PARAMS = (0.04, 0.06, 0.08, 0.09, 0.10)
    IMAGENET_PARAMS = (0.08, 0.12, 0.18, 0.26, 0.38)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        noise = _randn(x.shape, x, generator)
        return (x + self.c * noise).clamp(0, 1)


@register_corruption("shot_noise", "noise")
class ShotNoise(Corruption):
    """Poisson photon noise ``poisson(x c) / c``, clipped."""

    PARAMS = (500, 250, 100, 75, 50)
    IMAGENET_PARAMS = (60, 25, 12, 5, 3)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return (torch.poisson(x * self.c, generator=generator) / self.c).clamp(0, 1)


@register_corruption("impulse_noise", "noise")
class ImpulseNoise(Corruption):
    """Salt and pepper: a fraction ``c`` of the values (per channel) set to 0 or 1 equally."""

    PARAMS = (0.01, 0.02, 0.03, 0.05, 0.07)
    IMAGENET_PARAMS = (0.03, 0.06, 0.09, 0.17, 0.27)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        flipped = _rand(x.shape, x, generator) < self.c
        salted = _rand(x.shape, x, generator) < 0.5
        out = torch.where(flipped & salted, torch.ones_like(x), x)
        return torch.where(flipped & ~salted, torch.zeros_like(x), out)


@register_corruption("speckle_noise", "noise")
class SpeckleNoise(Corruption):
    """Multiplicative noise ``x + x N(0, c^2)``, clipped (an extra/validation corruption)."""

    PARAMS = (0.06, 0.1, 0.12, 0.16, 0.2)
    IMAGENET_PARAMS = (0.15, 0.2, 0.35, 0.45, 0.6)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        noise = _randn(x.shape, x, generator)
        return (x + x * noise * self.c).clamp(0, 1)
