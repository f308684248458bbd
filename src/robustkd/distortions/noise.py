"""Additive Gaussian noise (family ``noise``), clipped to the valid pixel range."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustkd.distortions.base import (
    Distortion,
    check_number,
    compute_dtype,
    register_distortion,
)

__all__ = ["GaussianNoise"]


@register_distortion("noise")
class GaussianNoise(Distortion):
    """Additive Gaussian noise ``x + sigma * N(0, 1)`` per pixel and channel, clipped to [0, 1].

    The baseline code does not clip; the paper says the noisy image is clipped to the valid
    range, and so do we.

    Args:
        sigma: Standard deviation of the noise, in pixel units (pixels in [0, 1]); >= 0.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_number("noise", "sigma", sigma, 0.0)

    def params(self) -> dict[str, Any]:
        """Return ``{"sigma": sigma}``."""
        return {"sigma": self.sigma}

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        dtype = compute_dtype(x.dtype)
        noise = torch.randn(x.shape, dtype=dtype, device=x.device, generator=generator)
        out = torch.add(x.to(dtype), noise, alpha=self.sigma).clamp_(0.0, 1.0)  # (B, C, H, W)
        return out.to(x.dtype)
