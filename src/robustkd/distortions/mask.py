"""Random pixel masking (family ``mask``): a fraction of pixel positions per image set to 0."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustkd.distortions.base import Distortion, check_number, register_distortion

__all__ = ["RandomMask"]


@register_distortion("mask")
class RandomMask(Distortion):
    """Random pixel masking: ``int(H * W * p)`` pixel positions per image are set to 0.

    The positions are drawn uniformly without replacement, independently for each image of the
    batch, and are the same in every channel (as in the Contrastive Inversion code).

    Args:
        p: Fraction of pixel positions masked, in [0, 1].
    """

    def __init__(self, p: float) -> None:
        self.p = check_number("mask", "p", p, 0.0, 1.0)

    def params(self) -> dict[str, Any]:
        """Return ``{"p": p}``."""
        return {"p": self.p}

    def num_masked(self, height: int, width: int) -> int:
        """Return the number of masked pixel positions of an image of ``height x width``."""
        return int(height * width * self.p)

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        n, k = h * w, self.num_masked(h, w)
        # A uniform random k-subset is the top-k of i.i.d. uniforms (ties do not bias the choice
        # of a *set*). topk is cheaper for small k, so for p > 0.5 pick the kept positions.
        scores = torch.rand(b, n, device=x.device, generator=generator)  # (B, H*W)
        if k <= n - k:
            idx = scores.topk(k, dim=1, sorted=False).indices  # (B, k)
            masked = torch.zeros(b, n, dtype=torch.bool, device=x.device)  # (B, H*W)
            masked.scatter_(1, idx, True)
        else:
            idx = scores.topk(n - k, dim=1, sorted=False).indices  # (B, H*W - k)
            masked = torch.ones(b, n, dtype=torch.bool, device=x.device)  # (B, H*W)
            masked.scatter_(1, idx, False)
        return x.masked_fill(masked.view(b, 1, h, w), 0.0)  # (B, C, H, W)
