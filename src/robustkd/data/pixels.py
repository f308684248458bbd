"""One reading of an image file's pixels as 8-bit RGB, for every decode path of the project.

PIL opens a file in the pixel mode it holds. ``Image.convert("RGB")`` is right for the 8-bit
modes but clips 16-bit greyscale (``I;16``: a value of 40000 becomes 255, a re-saved patch a
white square). Every place that turns a file into pixels (the preparation's check
:func:`robustkd.data.prepared.check_image`, :meth:`robustkd.data.prepared.PreparedDataset.image`
and the engines' :class:`robustkd.engine.decode.ImageSource`) goes through :func:`to_rgb8`, so a
file reads the same everywhere:

- ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion
  (``1`` as 0 / 255; palettes looked up; CMYK as ``(255 - c)(255 - k) / 255``; YCbCr with the
  JFIF matrix; LAB as CIE L*a*b* to sRGB);
- ``LA``, ``PA``, ``RGBA``, ``RGBa``, ``RGBX``: the colour, alpha dropped (not composited);
- 16-bit greyscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, and ``I`` from a PNG, as older
  Pillow versions open 16-bit greyscale PNGs): the high byte, ``v >> 8``. PIL itself reduces
  16-bit RGB, RGBA and grey-alpha PNGs to their high byte, so the same 16-bit content gives the
  same 8-bit image in every mode; and an 8-bit image re-saved at 16 bits either way tools do
  it (``v * 257`` or ``v << 8``) reads back exactly.

Modes without a defined 8-bit scale (32-bit integer ``I`` from a TIFF, 32-bit float ``F``, and
any other) are refused with a :class:`~robustkd.errors.DataError` naming the file and its mode, at
preparation (before anything is written) and again at read time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from robustkd.errors import DataError

__all__ = ["COLOUR_MODES", "SIXTEEN_BIT_GREY", "check_mode", "to_rgb8"]

COLOUR_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)
"""Modes PIL's ``convert("RGB")`` reads correctly (alpha, where present, is dropped)."""

SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
"""Unsigned 16-bit greyscale modes, reduced to their high byte."""

_NO_SCALE = {
    "I": "32-bit signed integers",
    "F": "32-bit floats",
}


def _sixteen_bit(mode: str, fmt: str | None) -> bool:
    """Unsigned 16-bit greyscale: an ``I;16`` mode, or ``I`` of a PNG (whose samples are 16-bit)."""
    return mode in SIXTEEN_BIT_GREY or (mode == "I" and fmt == "PNG")


def check_mode(mode: str, name: str, fmt: str | None = None) -> None:
    """Refuse a pixel mode that has no defined 8-bit RGB reading.

    Args:
        mode: PIL's mode of the opened file.
        name: What the message calls the file (its path).
        fmt: PIL's format of the file (``PNG``, ``TIFF``, ...): mode ``I`` of a PNG holds
            16-bit samples.

    Raises:
        DataError: ``mode`` is neither in :data:`COLOUR_MODES` nor 16-bit greyscale; the
            message names the file, the mode and what to do.
    """
    if mode in COLOUR_MODES or _sixteen_bit(mode, fmt):
        return
    what = _NO_SCALE.get(mode, "a pixel format robustkd does not read")
    raise DataError(
        f"{name}: pixel mode {mode!r} ({what}) has no defined 8-bit reading; save the image as "
        "8-bit or 16-bit unsigned greyscale or RGB (e.g. PNG or JPEG), then prepare again"
    )


def to_rgb8(im: Image.Image, name: str) -> Image.Image:
    """Return an opened image as 8-bit RGB, the same way for every decode path.

    Args:
        im: The opened (or loaded) image.
        name: What an error message calls the file (its path).

    Returns:
        A loaded ``RGB`` image of the same size (a new image; ``im`` is left as it is).

    Raises:
        DataError: The mode has no defined 8-bit reading (:func:`check_mode`).
    """
    check_mode(im.mode, name, im.format)
    if _sixteen_bit(im.mode, im.format):
        # Native byte order whatever the file's; mode I (a PNG) holds 0..65535 in int32.
        grey = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        return Image.fromarray((grey >> 8).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")
