"""Procedural images with a learnable class signal, used to write the offline miniature.

Every class has a signature: a shape, a hue and a stripe texture (orientation and frequency).
An image draws the class object at a random position and scale on a cluttered background of
random distractor shapes, so a small network must find the object to classify it. Classes come
in pairs told apart only by stripe orientation: that fine evidence is what blur, noise and
masking destroy, while shape and hue survive longer, so each distortion family measurably hurts
accuracy without driving it to chance.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

__all__ = ["ClassSignature", "class_signature", "draw_image", "draw_histology_patch"]

_SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "bar", "star")


@dataclass(frozen=True)
class ClassSignature:
    """What identifies a class in a synthetic image.

    Attributes:
        shape: Name of the object's outline (one of the module's shapes).
        hue: Hue of the object in [0, 1).
        stripe_angle: Orientation of the stripe texture in radians.
        stripe_period: Stripe period as a fraction of the object size.
    """

    shape: str
    hue: float
    stripe_angle: float
    stripe_period: float


def class_signature(label: int, n_classes: int) -> ClassSignature:
    """Return the signature of class ``label`` among ``n_classes``.

    Classes come in pairs (``2m``, ``2m + 1``) that share shape and hue and differ only in the
    orientation of their stripes (90 degrees apart): telling them apart needs fine texture,
    which blur, noise and masking destroy. Pairs differ in shape (cycling fastest) or hue.

    Args:
        label: Class index in ``[0, n_classes)``.
        n_classes: Number of classes of the dataset.

    Returns:
        The class signature.
    """
    if not 0 <= label < n_classes:
        raise ValueError(f"label {label} outside [0, {n_classes})")
    n_shapes = len(_SHAPES)
    pair, member = divmod(label, 2)
    n_pairs = -(-n_classes // 2)
    n_hues = max(1, -(-n_pairs // n_shapes))
    shape = _SHAPES[pair % n_shapes]
    # Offset hues by shape so that few pairs still span the colour wheel.
    hue = ((pair // n_shapes) / n_hues + (pair % n_shapes) * 0.61803398875) % 1.0
    angle = (pair * 0.39269908 + member * np.pi / 2) % np.pi
    period = 0.22 + 0.1 * ((pair * 3) % 4) / 3.0
    return ClassSignature(shape, float(hue), float(angle), float(period))


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in normalised object coordinates ``u, v`` in [-1, 1]."""
    r = np.hypot(u, v)
    if shape == "disc":
        return r <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if shape == "triangle":
        return (v <= 0.85) & (v >= -0.95 + 2.0 * np.abs(u))
    if shape == "cross":
        return ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35)
    if shape == "star":
        theta = np.arctan2(v, u)
        return r <= 0.55 + 0.45 * np.cos(5 * theta) ** 2
    raise ValueError(f"unknown shape {shape!r}")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _paste(
    canvas: np.ndarray,
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    rotation: float,
    fill: np.ndarray,
) -> np.ndarray:
    """Paste a shape whose pixels take the colours ``fill`` (H, W, 3); returns its mask."""
    h, w, _ = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    du, dv = (xx + 0.5 - cx) / radius, (yy + 0.5 - cy) / radius
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * du + s * dv, -s * du + c * dv
    mask = _shape_mask(shape, u, v)
    canvas[mask] = fill[mask]
    return mask


def draw_image(
    rng: np.random.Generator,
    label: int,
    n_classes: int,
    size: int,
    *,
    palette: str = "natural",
    n_distractors: int = 3,
) -> np.ndarray:
    """Draw one image of class ``label``.

    Args:
        rng: Source of randomness (position, scale, clutter, colour jitter).
        label: Class index.
        n_classes: Number of classes.
        size: Height and width in pixels.
        palette: ``"natural"`` (varied backgrounds) or ``"aerial"`` (green/grey/brown ground).
        n_distractors: Number of random clutter shapes behind the object.

    Returns:
        A uint8 array of shape (size, size, 3).
    """
    sig = class_signature(label, n_classes)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S)

    # --- background: a random two-colour gradient plus smooth blotches -------------------------
    if palette == "aerial":
        base = [
            _hsv(rng.uniform(0.08, 0.35), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.6))
            for _ in range(2)
        ]
    else:
        base = [
            _hsv(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.85)) for _ in range(2)
        ]
    g = np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    canvas = base[0] * (1 - g[..., None]) + base[1] * g[..., None]  # (S, S, 3)

    # --- clutter: distractor shapes of random type and colour ---------------------------------
    for _ in range(n_distractors):
        shape = _SHAPES[rng.integers(len(_SHAPES))]
        colour = _hsv(rng.uniform(), rng.uniform(0.0, 0.4), rng.uniform(0.2, 0.9))
        fill = np.broadcast_to(colour, canvas.shape).copy()
        _paste(
            canvas,
            shape,
            rng.uniform(0, size),
            rng.uniform(0, size),
            size * rng.uniform(0.08, 0.18),
            rng.uniform(0, 2 * np.pi),
            fill,
        )

    # --- the class object: shape, hue and stripe texture --------------------------------------
    radius = size * rng.uniform(0.22, 0.38)
    cx, cy = rng.uniform(radius, size - radius), rng.uniform(radius, size - radius)
    hue = sig.hue + rng.normal(0, 0.02)
    light = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0))
    dark = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.35, 0.5))
    angle = sig.stripe_angle + rng.normal(0, 0.08)
    period = sig.stripe_period * 2 * radius / size
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period + rng.uniform()
    stripes = (np.sin(2 * np.pi * phase) > 0)[..., None]  # (S, S, 1)
    fill = np.where(stripes, light, dark)
    rotation = rng.normal(0, 0.25)
    _paste(canvas, sig.shape, cx, cy, radius, rotation, fill)

    canvas = canvas + rng.normal(0, 0.02, canvas.shape)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_histology_patch(rng: np.random.Generator, tumor: int, size: int) -> np.ndarray:
    """Draw an H&E-like patch: pink stroma with purple nuclei; tumour has more, larger nuclei.

    Args:
        rng: Source of randomness.
        tumor: 1 for a tumour patch, 0 for normal tissue.
        size: Height and width in pixels.

    Returns:
        A uint8 array of shape (size, size, 3).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stain = rng.normal(0, 0.03, 3).astype(np.float32)  # per-slide stain variation
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = np.array([0.93, 0.72, 0.82], np.float32) + stain
    n_nuclei = int(rng.integers(28, 40) if tumor else rng.integers(6, 12)) * size // 32
    r_lo, r_hi = (0.07, 0.12) if tumor else (0.03, 0.06)
    for _ in range(n_nuclei):
        r = size * rng.uniform(r_lo, r_hi)
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        ex = rng.uniform(0.6, 1.4)
        mask = ((xx - cx) / (r * ex)) ** 2 + ((yy - cy) * ex / r) ** 2 <= 1.0
        shade = rng.uniform(0.25, 0.45) if tumor else rng.uniform(0.4, 0.6)
        canvas[mask] = np.array([shade + 0.1, shade * 0.6, shade + 0.25], np.float32) + stain
    canvas += rng.normal(0, 0.03, canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
