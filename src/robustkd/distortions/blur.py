"""Gaussian blur (family ``blur``), equal to torchvision's, as two separable blur matrices."""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from robustkd.distortions.base import (
    Distortion,
    check_number,
    compute_dtype,
    register_distortion,
)

__all__ = ["GaussianBlur", "blur_matrix", "gaussian_kernel1d"]


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map integer positions to ``[0, n)`` by reflection about the edges (no edge repeat).

    Equals ``torch.nn.functional.pad(mode="reflect")`` for offsets up to ``n - 1``; beyond that
    (where torch refuses) the reflection is repeated, i.e. the signal is continued periodically
    with period ``2 * (n - 1)``: ... 2 1 | 0 1 2 ... n-1 | n-2 ... 0 | 1 2 ...
    """
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx)


def gaussian_kernel1d(kernel: int, sigma: float) -> np.ndarray:
    """Return torchvision's normalised 1-D Gaussian kernel, in float64.

    torchvision samples ``exp(-t^2 / (2 sigma^2))`` at integer offsets
    ``t = -(kernel-1)/2 .. (kernel-1)/2`` and normalises the sum to 1.

    Args:
        kernel: Odd kernel size.
        sigma: Standard deviation in pixels.

    Returns:
        Array of shape (kernel,).
    """
    t = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def blur_matrix(n: int, kernel: int, sigma: float) -> np.ndarray:
    """Return the (n, n) matrix of a 1-D Gaussian blur with reflect padding folded in.

    Row ``i`` holds the weights of output position ``i``: ``out = M @ signal``. Taps that fall
    outside the signal are reflected back in (see :func:`_reflect_index`), so the matrix is
    exact for any kernel size, including kernels wider than the image.

    Args:
        n: Signal length (image height or width).
        kernel: Odd kernel size.
        sigma: Standard deviation in pixels.

    Returns:
        Float64 array of shape (n, n); every row sums to 1.
    """
    weights = gaussian_kernel1d(kernel, sigma)  # (K,)
    half = kernel // 2
    rows = np.repeat(np.arange(n), kernel)  # (n*K,)
    cols = _reflect_index(rows + np.tile(np.arange(-half, half + 1), n), n)  # (n*K,)
    m = np.zeros((n, n), dtype=np.float64)
    np.add.at(m, (rows, cols), np.tile(weights, n))
    return m


@register_distortion("blur")
class GaussianBlur(Distortion):
    """Gaussian blur equal to torchvision's ``gaussian_blur(x, [kernel]*2, [sigma]*2)``.

    torchvision convolves with a 2-D kernel after reflect padding. The Gaussian is separable,
    so we instead multiply by two precomputed (H, H) and (W, W) matrices, blurring along rows
    then columns, with the reflect padding folded into the matrices: ``out = M_H @ x @ M_W^T``.
    This is about 10x faster on CPU and equal to torchvision within ~1e-6 in float32. The
    products run in float32 (float64 for float64 images) even under autocast.

    Where torchvision fails (``kernel // 2 >= H`` or ``W``: torch's reflect padding needs the
    padding smaller than the image), taps are reflected repeatedly, i.e. the image is continued
    as its mirrored periodic extension; the result is well defined and still a weighted
    average (rows of the matrices sum to 1). Deterministic: the generator is ignored.

    Args:
        kernel: Kernel size; an odd positive integer.
        sigma: Standard deviation of the Gaussian in pixels; > 0.
    """

    is_random: ClassVar[bool] = False

    def __init__(self, kernel: int, sigma: float) -> None:
        try:
            k = operator.index(kernel)
        except TypeError:
            k = None
        if isinstance(kernel, bool) or k is None or k < 1 or k % 2 == 0:
            raise ValueError(
                f"distortion 'blur': parameter 'kernel' must be an odd positive integer, "
                f"got {kernel!r}"
            )
        self.kernel = int(k)
        self.sigma = check_number("blur", "sigma", sigma, 0.0)
        if self.sigma == 0.0:
            raise ValueError("distortion 'blur': parameter 'sigma' must be > 0, got 0.0")
        # (n, device, dtype) -> (n, n) matrix; small (224 px: 200 kB in float32).
        self._cache: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}

    def params(self) -> dict[str, Any]:
        """Return ``{"kernel": kernel, "sigma": sigma}``."""
        return {"kernel": self.kernel, "sigma": self.sigma}

    def matrix(self, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Return the cached (n, n) blur matrix on ``device`` in ``dtype``."""
        key = (n, torch.device(device), dtype)
        if key not in self._cache:
            m = blur_matrix(n, self.kernel, self.sigma)
            self._cache[key] = torch.from_numpy(m).to(device=device, dtype=dtype)
        return self._cache[key]

    def __getstate__(self) -> dict[str, Any]:
        # Do not ship device tensors to DataLoader workers; they are rebuilt on demand.
        return {**self.__dict__, "_cache": {}}

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        del generator  # deterministic
        _, _, h, w = x.shape
        dtype = compute_dtype(x.dtype)
        m_h = self.matrix(h, x.device, dtype)  # (H, H)
        m_w = self.matrix(w, x.device, dtype)  # (W, W)
        # Autocast off: under mixed precision (training) the products would run in bf16/fp16
        # and evaluation's in float32; the distorted pixels must not depend on the caller.
        with torch.autocast(x.device.type, enabled=False):
            out = x.to(dtype) @ m_w.T  # (B, C, H, W): blur along each row
            out = m_h @ out  # (B, C, H, W): blur along each column
        return out.to(x.dtype)
