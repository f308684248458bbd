"""Weather corruptions: snow, frost, fog and brightness.

Part of :mod:`robustkd.corruptions`: parameters from ``make_cifar_c.py`` (``PARAMS``) and
``make_imagenet_c.py`` (``IMAGENET_PARAMS``); its
docstring says where and why we follow the released code.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

from robustkd.corruptions.core import (
    Corruption,
    _randint,
    _randn,
    _uniform,
    register_corruption,
)
from robustkd.corruptions.ops import (
    _clipped_zoom,
    _mapsize,
    _motion_blur,
    _quantize_imagemagick,
    _to_float64_levels,
    _truncate_to_levels,
    plasma_fractal,
)

# ----------------------------------------------------------------------------------------------
# Weather
# ----------------------------------------------------------------------------------------------


@register_corruption("snow", "weather")
class Snow(Corruption):
    """Zoomed, thresholded Gaussian flakes streaked by motion blur, over a whitened image.

    ``c`` = (loc, scale, zoom, threshold, blur radius, blur sigma, image blend).

    As released: the flake layer is truncated to an 8-bit grey image, streaked by ImageMagick
    and read back as its 8-bit output (:func:`_quantize_imagemagick`, a truncation); the
    whitened image is float32 (``np.float32`` and OpenCV's grey), the sum float64, and the
    result is truncated to 8-bit levels.
    """

    PARAMS = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )
    IMAGENET_PARAMS = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        loc, scale, zoom, threshold, radius, sigma, blend = self.c
        b, _, h, w = x.shape
        flakes = loc + scale * _randn((b, 1, h, w), x, generator)  # (B, 1, H, W)
        flakes = _clipped_zoom(flakes.to(torch.float64), zoom)  # float64, as numpy's draw
        flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
        flakes = torch.floor(flakes.clamp(0, 1) * 255) / 255  # to an 8-bit grey image
        angles = _uniform(-135.0, -45.0, (b,), x, generator)
        flakes = _quantize_imagemagick(_motion_blur(flakes, radius, sigma, angles))  # (B,1,H,W)
        x32 = _to_float64_levels(x).to(torch.float32)  # the released code's float32 image
        grey = (0.299 * x32[:, 0] + 0.587 * x32[:, 1] + 0.114 * x32[:, 2])[:, None]
        x32 = blend * x32 + (1 - blend) * torch.maximum(x32, grey * 1.5 + 0.5)
        out = x32.to(torch.float64) + flakes + torch.rot90(flakes, 2, dims=(2, 3))
        return _truncate_to_levels(out).to(x.dtype)


@lru_cache(maxsize=8)
def frost_texture(index: int, size: int = 160) -> np.ndarray:
    """A procedural frost texture, the stand-in for the benchmark's frost photographs.

    Ice needles (straight segments radiating from random nuclei, with side branches at about
    60 degrees, as dendritic frost grows) over a plasma-fractal haze, bluish white. Texture
    ``index`` is a fixed function of ``index`` (like a photograph on disk).

    Args:
        index: Which texture of the bank.
        size: Side in pixels (the photos, resized by 0.2 as the original does, are larger
            than 32 px and are cropped at random).

    Returns:
        (size, size, 3) float32 RGB in [0, 1].
    """
    rng = np.random.default_rng([0xF2057, index])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    haze = plasma_fractal(1, _mapsize(size, size), 1.6, gen)[0, :size, :size].numpy()
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(size * size / 250)):
        cx, cy = rng.uniform(-10, size + 10, 2)
        for _ in range(int(rng.integers(3, 7))):
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(5, 26)
            ex, ey = cx + length * np.cos(angle), cy + length * np.sin(angle)
            draw.line([(cx, cy), (ex, ey)], fill=int(rng.integers(110, 256)), width=1)
            for _ in range(int(rng.integers(1, 5))):
                t = rng.uniform(0.2, 0.9)
                bx, by = cx + t * (ex - cx), cy + t * (ey - cy)
                side = angle + rng.choice([-1.0, 1.0]) * np.deg2rad(rng.uniform(50, 70))
                blen = length * rng.uniform(0.15, 0.4)
                end = (bx + blen * np.cos(side), by + blen * np.sin(side))
                draw.line([(bx, by), end], fill=int(rng.integers(90, 220)), width=1)
    needles = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32) / 255
    frost = np.clip(0.2 + 0.35 * haze + 1.1 * needles, 0, 1)
    tint = np.array([0.86, 0.93, 1.0], dtype=np.float32)
    return (frost[..., None] * tint).astype(np.float32)


@register_corruption("frost", "weather")
class Frost(Corruption):
    """``c[0] x + c[1] frost`` with a random crop of a frost texture (procedural here).

    The original picks ``np.random.randint(5)`` of its six photographs (so the sixth is never
    used); we keep five procedural textures. CIFAR-10-C crops the photographs after resizing
    them by 0.2, ImageNet-C crops them at full size; the stand-in bank is drawn at
    ``max(160, 2 max(H, W))`` px, so a crop covers about the same share of a texture at 32 and
    224 px (a deviation: the stand-in has no native scale). Frost is therefore not comparable
    to the released frost images under either protocol.
    """

    PARAMS = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
    IMAGENET_PARAMS = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
    N_TEXTURES = 5

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        size = max(160, 2 * max(h, w))
        bank = torch.stack(
            [torch.from_numpy(frost_texture(i, size)) for i in range(self.N_TEXTURES)]
        ).permute(0, 3, 1, 2)  # (T, 3, S, S)
        which = _randint(0, self.N_TEXTURES, (b,), x, generator).cpu()
        top = _randint(0, size - h, (b,), x, generator).cpu()
        left = _randint(0, size - w, (b,), x, generator).cpu()
        crops = torch.stack(
            [bank[t, :, i : i + h, j : j + w] for t, i, j in zip(which, top, left, strict=True)]
        ).to(x)  # (B, 3, H, W)
        return (self.c[0] * x + self.c[1] * crops).clamp(0, 1)


@register_corruption("fog", "weather")
class Fog(Corruption):
    """Add ``c[0]`` times a plasma fractal (roughness decay ``c[1]``), rescale, clip."""

    PARAMS = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
    IMAGENET_PARAMS = ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        strength, decay = self.c
        b, _, h, w = x.shape
        plasma = plasma_fractal(b, _mapsize(h, w), decay, generator, x.device)[:, :h, :w]
        max_val = x.amax(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        out = x + strength * plasma[:, None].to(x)
        return (out * max_val / (max_val + strength)).clamp(0, 1)


@register_corruption("brightness", "weather")
class Brightness(Corruption):
    """Add ``c`` to the V channel of HSV (clipped), H and S unchanged."""

    PARAMS = (0.05, 0.1, 0.15, 0.2, 0.3)
    IMAGENET_PARAMS = (0.1, 0.2, 0.3, 0.4, 0.5)
    is_random: ClassVar[bool] = False

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        del generator
        v = x.amax(dim=1, keepdim=True)  # (B, 1, H, W): V of HSV
        v_new = (v + self.c).clamp(0, 1)
        # With H and S fixed, RGB is proportional to V; black (V = 0, S = 0) turns grey V'.
        scaled = x * (v_new / v.clamp_min(1e-12))
        return torch.where(v > 0, scaled, v_new.expand_as(x)).clamp(0, 1)
