"""Weather corruptions: snow, frost, fog and brightness.

Part of :mod:`robustkd.corruptions`: parameters from ``make_cifar_c.py`` (``PARAMS``) and
``make_imagenet_c.py`` (``IMAGENET_PARAMS``); its
docstring says where and why we follow the released code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import math
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

from robustkd.corruptions.core import (
    Corruption,
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

log = logging.getLogger(__name__)

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


#: The frost photographs of the released generators (hendrycks/robustness,
#: ``ImageNet-C/create_c/``) as the ``imagecorruptions`` package ships them, byte for byte:
#: file -> sha256. Both generators draw ``np.random.randint(5)``: ``frost6.jpg`` is never used.
FROST_PHOTOGRAPHS = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
}


def frost_photo_dir() -> Path | None:
    """The folder of the frost photographs the ``imagecorruptions`` package ships, if installed.

    Found without importing the package (its ``__init__`` imports OpenCV, scikit-image and
    ``pkg_resources``, which we do not need and which may be missing).
    """
    spec = importlib.util.find_spec("imagecorruptions")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "frost"
        if all((folder / name).is_file() for name in FROST_PHOTOGRAPHS):
            return folder
    return None


def frost_source() -> str:
    """Which frost images :class:`Frost` blends here (the corrupted sets' provenance has it).

    Returns:
        ``photographs (imagecorruptions <version>)`` or
        ``procedural (imagecorruptions not installed)``.
    """
    if frost_photo_dir() is None:
        return "procedural (imagecorruptions not installed)"
    try:
        version = metadata.version("imagecorruptions")
    except metadata.PackageNotFoundError:  # found on the path without its metadata
        version = "of unknown version"
    return f"photographs (imagecorruptions {version})"


@lru_cache(maxsize=2)
def frost_photographs(protocol: str) -> tuple[np.ndarray, ...] | None:
    """The five frost photographs as the released generator of ``protocol`` crops them.

    ``cv2.imread`` (BGR, alpha dropped; we decode RGB with PIL: the same bytes, both libraries
    decoding the two JPEGs with libjpeg-turbo; a decoder of another lineage, as an OpenCV build
    of the benchmark's day may have had, can differ by a level there), then for
    CIFAR-10-C ``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)``: bilinear at scale 5 samples source
    pixel ``(i + 0.5) * 5 - 0.5 = 5 i + 2`` with weight 1, so it is the subsample
    ``[2::5, 2::5]`` to ``round(0.2 n)`` rows and columns (equal to OpenCV's bytes). ImageNet-C
    keeps full size.

    Args:
        protocol: ``cifar10c`` or ``imagenetc``.

    Returns:
        Five (H, W, 3) uint8 RGB arrays, or None (with a warning) when the ``imagecorruptions``
        package is not installed.

    Raises:
        ValueError: A photograph that is not the released file (named, with its sha256).
    """
    folder = frost_photo_dir()
    if folder is None:
        log.warning(
            "frost: the imagecorruptions package (which ships the benchmark's frost "
            "photographs) is not installed; using procedural textures, not comparable with "
            "the released frost images (pip install imagecorruptions)"
        )
        return None
    photos = []
    for name, sha in FROST_PHOTOGRAPHS.items():
        data = (folder / name).read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise ValueError(
                f"{folder / name}: not the released frost photograph (sha256 {got}, expected "
                f"{sha}); install imagecorruptions 1.1.2, which ships the released files"
            )
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))  # RGBA: alpha dropped, as cv2.imread does
        if protocol == "cifar10c":
            rows, cols = (int(np.rint(n * 0.2)) for n in rgb.shape[:2])
            r = np.minimum(5 * np.arange(rows) + 2, rgb.shape[0] - 1)
            c = np.minimum(5 * np.arange(cols) + 2, rgb.shape[1] - 1)
            rgb = rgb[r][:, c]
        photos.append(np.ascontiguousarray(rgb))
    return tuple(photos)


@lru_cache(maxsize=8)
def frost_texture(index: int, size: int = 160) -> np.ndarray:
    """A procedural frost texture: the fallback when the frost photographs are not installed.

    Ice needles (straight segments radiating from random nuclei, with side branches at about
    60 degrees, as dendritic frost grows) over a plasma-fractal haze, bluish white. Texture
    ``index`` is a fixed function of ``index`` (like a photograph on disk). It looks unlike
    the photographs (sharp needles where they give a haze): results with it are not comparable
    with the benchmark's frost.

    Args:
        index: Which texture of the bank.
        size: Side in pixels.

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


@lru_cache(maxsize=8)
def frost_bank(protocol: str, h: int, w: int) -> tuple[np.ndarray, ...]:
    """The five frost images :class:`Frost` crops ``h`` x ``w`` patches from (uint8 RGB).

    The protocol's photographs (:func:`frost_photographs`); where one is not larger than the
    image in both sides (never at the protocols' own sizes, 32 and 224 px: the released code
    would fail), it is enlarged (bicubic) to ``h + 1`` / ``w + 1`` at the least, as
    ``imagecorruptions`` enlarges it. Without the photographs: five procedural textures
    (:func:`frost_texture`) of side ``max(160, 2 max(h, w))``, in 8-bit levels.
    """
    photos = frost_photographs(protocol)
    if photos is None:
        size = max(160, 2 * max(h, w))
        return tuple(
            (frost_texture(i, size) * 255 + 0.5).astype(np.uint8) for i in range(Frost.N_IMAGES)
        )
    fitted = []
    for photo in photos:
        rows, cols = photo.shape[:2]
        if rows <= h or cols <= w:
            scale = max((h + 1) / rows, (w + 1) / cols)
            size = (math.ceil(cols * scale), math.ceil(rows * scale))
            photo = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC))
        fitted.append(photo)
    return tuple(fitted)


@register_corruption("frost", "weather")
class Frost(Corruption):
    """``c[0] x + c[1] frost`` with a random crop of one of the benchmark's frost photographs.

    As released (``make_cifar_c.py``, ``make_imagenet_c.py``): photograph
    ``np.random.randint(5)`` (the sixth is never used), top-left corner ``randint(0, H - h)``,
    ``randint(0, W - w)`` (the last row and column of positions never drawn), CIFAR-10-C on
    the photographs resized by 0.2, ImageNet-C at full size (:func:`frost_photographs`); the
    blend in float64 on 8-bit levels, clipped and truncated to 8-bit levels (``np.uint8``).
    The draws: the photograph (``torch.randint``), then the corner as ``floor(u (H - h))``
    with ``u`` uniform float64. The photographs come from the ``imagecorruptions`` package;
    without it, a procedural texture bank stands in (:func:`frost_bank`, a warning,
    :func:`frost_source` in the provenance), not comparable with the benchmark's frost.
    """

    PARAMS = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
    IMAGENET_PARAMS = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
    N_IMAGES = 5

    def crop_draws(
        self, b: int, h: int, w: int, generator: torch.Generator | None, device: torch.device
    ) -> list[tuple[int, int, int]]:
        """The (image, top, left) of each of ``b`` crops, drawn from ``generator``."""
        bank = frost_bank(self.protocol, h, w)
        which = torch.randint(0, len(bank), (b,), generator=generator, device=device).cpu()
        u = torch.rand((b, 2), generator=generator, device=device, dtype=torch.float64).cpu()
        draws = []
        for k in range(b):
            t = int(which[k])
            rows, cols = bank[t].shape[0] - h, bank[t].shape[1] - w  # randint's (exclusive) highs
            top = min(int(float(u[k, 0]) * rows), rows - 1)
            left = min(int(float(u[k, 1]) * cols), cols - 1)
            draws.append((t, top, left))
        return draws

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        bank = frost_bank(self.protocol, h, w)
        draws = self.crop_draws(b, h, w, generator, x.device)
        crops = np.stack([bank[t][i : i + h, j : j + w] for t, i, j in draws])  # (B, h, w, 3)
        frost = torch.from_numpy(crops).to(x.device, torch.float64).permute(0, 3, 1, 2)
        x255 = _to_float64_levels(x) * 255.0  # k / 255 -> exactly k, as np.array(img)
        out = self.c[0] * x255 + self.c[1] * frost
        return (torch.floor(out.clamp(0, 255)) / 255.0).to(x.dtype)


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
