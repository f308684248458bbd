"""Image operations the corruptions share, following the libraries the released code calls.

Border rules, separable filters as matrices (and scipy's own summation order where bits
matter), scipy's zoom, ImageMagick's motion blur and 8-bit output, bilinear sampling, PIL per
image, skimage's HSV arithmetic, 8-bit levels and the diamond-square plasma fractal. Part of
:mod:`robustkd.corruptions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def _index_map(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer positions to ``[0, n)`` by a border rule.

    ``nearest``: edge replicated (aaa|abcd|ddd); ``symmetric``: scipy's ``reflect``, edge
    repeated (cba|abcd|dcb); ``reflect101``: OpenCV's default and torch's ``reflect``, edge not
    repeated (dcb|abcd|cba). Reflections repeat for any offset.
    """
    if mode == "nearest":
        return np.clip(idx, 0, n - 1)
    if n == 1:
        return np.zeros_like(idx)
    if mode == "symmetric":
        idx = np.mod(idx, 2 * n)
        return np.where(idx < n, idx, 2 * n - 1 - idx)
    if mode == "reflect101":
        period = 2 * (n - 1)
        idx = np.mod(idx, period)
        return np.where(idx < n, idx, period - idx)
    raise ValueError(f"unknown border mode {mode!r}")


def _index_map_t(idx: Tensor, n: int, mode: str) -> Tensor:
    """:func:`_index_map` on a long tensor."""
    if mode == "nearest":
        return idx.clamp(0, n - 1)
    if n == 1:
        return torch.zeros_like(idx)
    if mode == "symmetric":
        idx = torch.remainder(idx, 2 * n)
        return torch.where(idx < n, idx, 2 * n - 1 - idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx < n, idx, period - idx)


def _filter_matrix(n: int, weights: np.ndarray, mode: str) -> np.ndarray:
    """(n, n) matrix of a centred 1-D correlation with ``weights`` and a border rule."""
    half = len(weights) // 2
    rows = np.repeat(np.arange(n), len(weights))
    cols = _index_map(rows + np.tile(np.arange(-half, half + 1), n), n, mode)
    m = np.zeros((n, n), dtype=np.float64)
    np.add.at(m, (rows, cols), np.tile(weights, n))
    return m


def _scipy_gaussian_weights(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return np.ones(1)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


@lru_cache(maxsize=256)
def _gaussian_matrix(n: int, sigma: float, truncate: float, mode: str) -> np.ndarray:
    return _filter_matrix(n, _scipy_gaussian_weights(sigma, truncate), mode)


def _gaussian_filter(
    x: Tensor, sigma: float, truncate: float = 4.0, mode: str = "nearest"
) -> Tensor:
    """skimage/scipy Gaussian filter over the last two axes of ``x`` (any leading shape)."""
    h, w = x.shape[-2:]
    m_h = torch.from_numpy(_gaussian_matrix(h, float(sigma), truncate, mode)).to(x)
    m_w = torch.from_numpy(_gaussian_matrix(w, float(sigma), truncate, mode)).to(x)
    return m_h @ x @ m_w.T


def _gaussian_filter_scipy_order(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """:func:`_gaussian_filter` (nearest borders) with scipy's float64 arithmetic, term by term.

    ``scipy.ndimage.gaussian_filter`` runs ``correlate1d`` along H, then W, with weights
    ``exp(-0.5 / sigma^2 t^2)`` normalised by their sum; for a symmetric kernel each output is
    ``x[i] w[0] + sum_{j = r..1} (x[i - j] + x[i + j]) w[j]``, outermost pair first. The
    matrix product gives the same values up to round-off; this order gives the same bits,
    which matters where the result is truncated to uint8 (glass blur).

    Args:
        x: (..., H, W) float64 values.
        sigma: Standard deviation in pixels.
        truncate: Radius in standard deviations (``int(truncate sigma + 0.5)`` taps a side).

    Returns:
        The filtered values, same shape and dtype.
    """
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 1e-15 or radius == 0:
        return x.clone()
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / (float(sigma) * float(sigma)) * t**2)
    w = (w / w.sum())[radius:]  # w[j] for offsets j = 0..r
    for dim in (-2, -1):
        n = x.shape[dim]
        idx = torch.arange(-radius, n + radius, device=x.device).clamp(0, n - 1)
        padded = x.index_select(dim, idx)  # nearest: edge values repeated

        def shifted(j: int, padded: Tensor = padded, dim: int = dim, n: int = n) -> Tensor:
            return padded.narrow(dim, radius + j, n)

        out = shifted(0) * float(w[0])
        for j in range(radius, 0, -1):
            out = out + (shifted(-j) + shifted(j)) * float(w[j])
        x = out
    return x


@lru_cache(maxsize=256)
def _zoom_matrix(n: int, zoom: float) -> np.ndarray:
    """(n, n) matrix of ``clipped_zoom`` along one axis (scipy ``zoom(order=1)`` of the crop).

    The central ``ceil(n / zoom)`` pixels are zoomed to ``round(ch * zoom)`` pixels (scipy maps
    output ``o`` to input ``o (ch - 1) / (out - 1)``) and the central ``n`` are kept.
    """
    ch = int(np.ceil(n / zoom))
    top = (n - ch) // 2
    out = int(round(ch * zoom))
    trim = (out - n) // 2
    m = np.zeros((n, n), dtype=np.float64)
    scale = (ch - 1) / (out - 1) if out > 1 else 0.0
    for r in range(n):
        c = (r + trim) * scale
        i0 = min(int(np.floor(c)), ch - 1)
        f = c - i0
        m[r, top + i0] += 1.0 - f
        if f > 0:
            m[r, top + min(i0 + 1, ch - 1)] += f
    return m


def _clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    """``clipped_zoom`` of ``make_cifar_c.py`` over the last two axes (square images)."""
    h, w = x.shape[-2:]
    m_h = torch.from_numpy(_zoom_matrix(h, float(zoom))).to(x)
    m_w = torch.from_numpy(_zoom_matrix(w, float(zoom))).to(x)
    return m_h @ x @ m_w.T


def _motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's motion blur of each image of ``x`` (B, C, H, W) along its own angle.

    ``2 ceil(radius) + 1`` taps ``i`` weighted by ``exp(-i^2 / (2 sigma^2))`` (normalised) read
    the pixel at ``(y, x) + round(i (sin a, cos a))``; pixels outside the image repeat the edge.

    Args:
        x: Images.
        radius: Blur radius in pixels.
        sigma: Standard deviation of the taps' weights.
        angles: (B,) angles in degrees.
    """
    b, c, h, w = x.shape
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, device=x.device, dtype=torch.float64)  # (K,)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)  # (K,)
    theta = torch.deg2rad(angles.to(torch.float64))[:, None]  # (B, 1)
    # ImageMagick: offset = ceil(i * cos|sin / hypot - 0.5) with hypot = width (unit direction).
    dx = torch.ceil(i[None] * torch.cos(theta) - 0.5).long()  # (B, K)
    dy = torch.ceil(i[None] * torch.sin(theta) - 0.5).long()  # (B, K)
    rows = (torch.arange(h, device=x.device)[None, None] + dy[..., None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None, None] + dx[..., None]).clamp(0, w - 1)
    idx = rows[..., :, None] * w + cols[..., None, :]  # (B, K, H, W)
    gathered = torch.gather(
        x.reshape(b, c, h * w), 2, idx.reshape(b, 1, -1).expand(b, c, -1)
    )  # (B, C, K*H*W)
    gathered = gathered.view(b, c, width, h, w)
    return torch.einsum("bckhw,k->bchw", gathered, k)


def _bilinear(x: Tensor, ys: Tensor, xs: Tensor, mode: str) -> Tensor:
    """Sample ``x`` (B, C, H, W) at float coordinates ``ys``, ``xs`` (B, H, W), bilinearly.

    Neighbours outside the image are mapped back by ``mode`` (see :func:`_index_map`).
    """
    b, c, h, w = x.shape
    y0, x0 = torch.floor(ys), torch.floor(xs)
    fy, fx = (ys - y0)[:, None], (xs - x0)[:, None]  # (B, 1, H, W)
    y0, x0 = y0.long(), x0.long()
    flat = x.reshape(b, c, h * w)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        idx = _index_map_t(yy, h, mode) * w + _index_map_t(xx, w, mode)  # (B, H, W)
        return torch.gather(flat, 2, idx.reshape(b, 1, -1).expand(b, c, -1)).view(b, c, h, w)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _quantize_imagemagick(x: Tensor) -> Tensor:
    """8-bit levels as ImageMagick 6 (Q16, non-HDRI) writes a filtered image out as 8 bits.

    The filter's result is first stored as a 16-bit quantum, rounded (``ClampToQuantum``:
    ``q = round(65535 x)``), and the 8-bit output keeps ``floor(q / 257)``: in effect a
    truncation, so about half the values are one level below rounding. Measured against
    ImageMagick 6.9.11-60 Q16 through Wand on the same images and angles: this rule
    reproduces every motion-blur value of the 5 severities (0 of 245,760 differ); rounding
    gives one level more on 48 %.

    Args:
        x: Values in [0, 1] (any shape); computed in float64 for the 16-bit rounding.

    Returns:
        ``floor(round(65535 x) / 257) / 255`` in the dtype of ``x``.
    """
    q = torch.round(x.to(torch.float64).clamp(0, 1) * 65535.0)
    return (torch.floor(q / 257.0) / 255.0).to(x.dtype)


def _per_image_pil(x: Tensor, fn: Callable[[Image.Image], Image.Image]) -> Tensor:
    """Apply a PIL function to every image of ``x`` (B, 3, H, W) as uint8 RGB, and back."""
    arr = torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
    out = [np.asarray(fn(Image.fromarray(a)).convert("RGB")) for a in arr.cpu().numpy()]
    t = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)
    return t / 255.0


def _to_float64_levels(x: Tensor) -> Tensor:
    """``x`` in float64, with 8-bit inputs read as exact ``k / 255`` (as ``np.array(img) / 255.``).

    The released generator starts from uint8 images; a float32 ``k / 255`` differs from the
    float64 one in the last bits, which flips truncations downstream. Values within 1e-6 of a
    level are snapped to it; others are kept as they are.
    """
    x64 = x.to(torch.float64)
    levels = torch.round(x64 * 255.0) / 255.0
    return torch.where((x64 - levels).abs() < 1e-6, levels, x64)


def _truncate_to_levels(x: Tensor) -> Tensor:
    """``np.uint8(np.clip(x, 0, 1) * 255) / 255``: truncation to 8-bit levels, no tolerance."""
    return torch.floor(x.clamp(0, 1) * 255.0) / 255.0


def _rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB to HSV as skimage's ``rgb2hsv`` computes it, on (B, 3, H, W), ties included.

    V = max, S = (max - min) / V (0 where max = min), H from the max channel, the last of red,
    green, blue winning ties; achromatic pixels get hue 0. Returns (B, 3, H, W): H, S, V in
    [0, 1].
    """
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.amax(dim=1)
    delta = v - x.amin(dim=1)
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    s = torch.where(grey, torch.zeros_like(v), delta / torch.where(grey, torch.ones_like(v), v))
    h = (g - b) / safe
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = h / 6.0
    h = torch.where(h < 0, h + 1.0, h)  # numpy's % 1 on (-1/6, 5/6]
    h = torch.where(h >= 1, h - 1.0, h)
    h = torch.where(grey, torch.zeros_like(h), h)
    return torch.stack([h, s, v], dim=1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV to RGB as skimage's ``hsv2rgb`` computes it (six hue sectors), on (B, 3, H, W)."""
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = torch.remainder(hi.long(), 6)[:, None]  # (B, 1, H, W)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.stack(table[0], dim=1)
    for k, rgb in enumerate(table[1:], start=1):
        out = torch.where(sector == k, torch.stack(rgb, dim=1), out)
    return out


def plasma_fractal(
    batch: int,
    mapsize: int,
    wibbledecay: float,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Diamond-square height maps in [0, 1] (``plasma_fractal`` of ``make_cifar_c.py``).

    Args:
        batch: Number of maps.
        mapsize: Side, a power of two.
        wibbledecay: Roughness decay per level (larger: smoother).
        generator: Source of randomness (on ``device``).
        device: Where to compute.

    Returns:
        (batch, mapsize, mapsize) float32 maps, each min-max normalised.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma_fractal: mapsize must be a power of two, got {mapsize}")
    n = mapsize
    a = torch.zeros(batch, n, n, dtype=torch.float64, device=device)  # (B, n, n)
    step, wibble = n, 100.0

    def wibbled_mean(arr: Tensor) -> Tensor:
        noise = torch.rand(arr.shape, generator=generator, device=device, dtype=torch.float64)
        return arr / 4 + wibble * (2 * wibble * noise - wibble)

    while step >= 2:
        half = step // 2
        # Squares: centre = mean of the four corners + wibble.
        corner = a[:, 0:n:step, 0:n:step]
        sq = corner + torch.roll(corner, -1, dims=1)
        sq = sq + torch.roll(sq, -1, dims=2)
        a[:, half:n:step, half:n:step] = wibbled_mean(sq)
        # Diamonds: edge midpoints = mean of the neighbouring corners and centres + wibble.
        dr = a[:, half:n:step, half:n:step]
        ul = a[:, 0:n:step, 0:n:step]
        lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
        a[:, 0:n:step, half:n:step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
        a[:, half:n:step, 0:n:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    a = a - a.amin(dim=(1, 2), keepdim=True)
    return (a / a.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)).float()


def _mapsize(h: int, w: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(h, w))))
