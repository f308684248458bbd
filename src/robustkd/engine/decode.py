"""Least-work decoding of the engines' views: uint8 crops on the host, float on the device.

The train and eval views (:class:`robustkd.engine.data.ImageSet`) need one output square per
image. This module produces it doing as little work per image as it can:

1. Only the file's header is read to learn the image's size, so the view's random crop box can be
   drawn (from ``(seed, epoch, index)``, in full-resolution coordinates) before any decoding.
2. When the crop, scaled down by 2, 4 or 8, still covers at least the output size, the JPEG is
   decoded at that reduction in the DCT (libjpeg's scaling, through PIL's ``draft``), and PIL
   resizes the box mapped into the reduced image's coordinates (sub-pixel exact).
3. Otherwise an RGB JPEG is decoded at full size by torchvision's ``decode_image``
   (libjpeg-turbo: the same pixels as PIL's decoder, into channels-last memory, without PIL's
   extra copy; other files by PIL), and the box is cropped and resized on uint8 by
   ``torch.nn.functional.interpolate`` (PyTorch's vectorised uint8 kernel on the channels-last
   layout).
4. Resizing is bilinear with antialiasing throughout, as the former float path.

torchvision deprecated its decoders in 0.29 in favour of TorchCodec; the project pins
torchvision < 0.30 (pyproject.toml), where ``decode_image`` is present.

Float conversion and normalisation are left to the device, batched: :func:`to_unit_float`.

Pixels versus the former float path (crop and resize in float32 of the fully decoded image):
identical crop boxes; at no reduction, pixels within 1/255 (uint8 rounding of the resize); with a
DCT reduction, the DCT-scaled decode differs from a full decode plus antialiased resize by a few
levels, most on edges (bounds in ``tests/test_decode.py``).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robustkd.data.pixels import to_rgb8
from robustkd.errors import DataError

__all__ = [
    "DCT_REDUCTIONS",
    "ImageSource",
    "crop_box",
    "dct_reduction",
    "eval_crop",
    "train_crop",
    "to_unit_float",
]

DCT_REDUCTIONS = (8, 4, 2, 1)
"""Reductions libjpeg applies in the DCT through PIL's ``draft`` (PIL's JpegImagePlugin)."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError)
# Decoded by torchvision.io.decode_image when RGB. Not PNG: torchvision keeps 16 bits per channel
# where PIL reduces them to 8.
_TORCHVISION_FORMATS = ("JPEG",)


def crop_box(
    rng: np.random.Generator, h: int, w: int, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box sampling (torchvision's algorithm, with our generator).

    Args:
        rng: The image's generator (``rng_for(seed, epoch, index)``).
        h: Image height in pixels.
        w: Image width in pixels.
        scale: Area range, as fractions of the image.
        ratio: Aspect ratio (width / height) range.

    Returns:
        ``(top, left, height, width)`` in pixels.
    """
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    # Fallback: the central crop of the clamped aspect ratio (as torchvision).
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def dct_reduction(need_h: float, need_w: float, out_h: int, out_w: int) -> int:
    """Return the largest DCT reduction keeping a region at least as large as the output.

    Args:
        need_h: Height in full-resolution pixels of the region that is resized to the output.
        need_w: Its width.
        out_h: Output height in pixels.
        out_w: Output width in pixels.

    Returns:
        ``r`` in :data:`DCT_REDUCTIONS` with ``need_h / r >= out_h`` and ``need_w / r >= out_w``,
        or 1.
    """
    for r in DCT_REDUCTIONS:
        if need_h / r >= out_h and need_w / r >= out_w:
            return r
    return 1


@dataclass
class ImageSource:
    """One image, opened but not decoded: a file's bytes or a uint8 array already in memory.

    Attributes:
        height: Full-resolution height in pixels.
        width: Full-resolution width in pixels.
        data: The file's bytes (None for an array).
        array: uint8 (H, W, 3) pixels (None for a file).
        name: What error messages call the image (its path).
        fast: Whether torchvision decodes the file (an RGB JPEG; else PIL does).
    """

    height: int
    width: int
    data: bytearray | None = None
    array: np.ndarray | torch.Tensor | None = None
    name: str = "<array>"
    fast: bool = False

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ImageSource:
        """Read a file and its header (the pixels are decoded later).

        Args:
            path: The image file.

        Returns:
            The source.

        Raises:
            DataError: The file cannot be read or its header parsed (the message names it).
        """
        try:
            data = bytearray(open(path, "rb").read())
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                fast = im.format in _TORCHVISION_FORMATS and im.mode == "RGB"
        except _DECODE_ERRORS as exc:
            raise DataError(f"{path}: unreadable image ({exc})") from exc
        return cls(height, width, data=data, name=str(path), fast=fast)

    @classmethod
    def from_array(cls, array: np.ndarray | torch.Tensor) -> ImageSource:
        """Wrap uint8 pixels (H, W, 3) already in memory (a packed split or a preload cache)."""
        return cls(int(array.shape[0]), int(array.shape[1]), array=array)

    def tensor(self) -> torch.Tensor:
        """Decode the pixels at full size.

        RGB JPEG files go to torchvision's ``decode_image``; other files (grey or CMYK JPEGs;
        other formats) to PIL, read as 8-bit RGB by :func:`robustkd.data.pixels.to_rgb8` (16-bit
        greyscale by its high byte, not clipped).

        Returns:
            uint8 (3, H, W) with channels-last strides (the layout PyTorch's uint8 resize
            kernel is fastest on).

        Raises:
            DataError: The file cannot be decoded or its pixel mode has no 8-bit reading (the
                message names it).
        """
        if self.array is not None:
            arr = self.array
            pixels = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(np.array(arr))
            return pixels.permute(2, 0, 1)
        assert self.data is not None
        try:
            if self.fast:
                # Here, not at the top: a job that decodes no JPEG file (the CRAFT jobs, whose
                # images are arrays) then does not import torchvision (a second per job).
                from torchvision.io import ImageReadMode, decode_image

                buf = torch.frombuffer(self.data, dtype=torch.uint8)
                return decode_image(buf, ImageReadMode.RGB)
            with Image.open(io.BytesIO(self.data)) as im:
                return _to_tensor(to_rgb8(im, self.name))
        except _DECODE_ERRORS as exc:
            raise DataError(f"{self.name}: unreadable image ({exc})") from exc

    def reduced(self, reduction: int) -> tuple[Image.Image, int] | None:
        """Decode a JPEG file reduced in the DCT (libjpeg's scaling, via PIL's ``draft``).

        Args:
            reduction: Wanted reduction, in :data:`DCT_REDUCTIONS`.

        Returns:
            ``(image, r)``: the loaded RGB image of size ``(ceil(width / r), ceil(height / r))``
            and the reduction applied; None for an array or a file that is not a JPEG.

        Raises:
            DataError: The file cannot be decoded (the message names it).
        """
        if self.data is None:
            return None
        try:
            with Image.open(io.BytesIO(self.data)) as im:
                drafted = im.draft("RGB", (self.width // reduction, self.height // reduction))
                if drafted is None:  # not a JPEG
                    return None
                r = round(self.width / drafted[1][2])  # draft's box: the full image, reduced
                return to_rgb8(im, self.name), r
        except _DECODE_ERRORS as exc:
            raise DataError(f"{self.name}: unreadable image ({exc})") from exc


def _to_tensor(im: Image.Image) -> torch.Tensor:
    """uint8 (3, H, W), channels-last strides, of an RGB PIL image."""
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)


def _resize(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing of uint8 (1, 3, H, W) (channels-last: the uint8 kernel)."""
    if tuple(img.shape[-2:]) == hw:
        return img
    return F.interpolate(img, size=hw, mode="bilinear", antialias=True, align_corners=False)


def train_crop(source: ImageSource, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """RandomResizedCrop's output for a given box, decoding only what it needs.

    At a DCT reduction ``r``, PIL resizes the box mapped to the reduced image's coordinates
    (``box / r``, sub-pixel exact); otherwise PyTorch resizes the box of the full image.
    Both: bilinear with antialiasing, on uint8.

    Args:
        source: The image.
        box: ``(top, left, height, width)`` in full-resolution pixels.
        size: Side of the square output in pixels.

    Returns:
        uint8 (3, size, size).
    """
    top, left, ch, cw = box
    r = dct_reduction(ch, cw, size, size)
    got = source.reduced(r) if r > 1 else None
    if got is not None:
        im, r = got
        sub = (left / r, top / r, (left + cw) / r, (top + ch) / r)
        return _to_tensor(im.resize((size, size), Image.BILINEAR, box=sub, reducing_gap=None))
    crop = source.tensor()[None, :, top : top + ch, left : left + cw]  # a view, channels-last
    return _resize(crop, (size, size))[0]


def eval_crop(source: ImageSource, short: int, size: int) -> torch.Tensor:
    """Resize the shorter side to ``short``, then take the central ``size`` square.

    The resized shape is computed from the full-resolution size, as by the former float path;
    the decode is reduced in the DCT when the reduced image is still at least that large.

    Args:
        source: The image.
        short: Length in pixels of the shorter side after resizing (e.g. 256 for 224).
        size: Side of the square output in pixels.

    Returns:
        uint8 (3, size, size).
    """
    h, w = source.height, source.width
    scale = short / min(h, w)
    rh, rw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (rh - size) // 2, (rw - size) // 2
    r = dct_reduction(h, w, rh, rw)
    got = source.reduced(r) if r > 1 else None
    if got is not None:
        im, r = got
        img = _to_tensor(im.resize((rw, rh), Image.BILINEAR, box=(0, 0, w / r, h / r)))
    else:
        img = _resize(source.tensor()[None], (rh, rw))[0]
    return img[:, top : top + size, left : left + size]


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """Turn a batch of pixels into float32 in [0, 1] where it lies (call it on the device).

    Args:
        images: uint8 (B, 3, H, W) in [0, 255], or a floating batch already in [0, 1] (such as
            :class:`robustkd.craft.evaluate.ArrayImages` yields), returned unchanged.

    Returns:
        float (B, 3, H, W) in [0, 1] on ``images``' device.
    """
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images
