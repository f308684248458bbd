"""A distortion's severity as the figures show it: its value, tick label, family title and axis.

The severity of a family is the config value that grows with its strength: the mask ratio
``p``, the noise ``sigma`` or the blur ``sigma`` (blur ticks name the kernel size too, as the
paper names its blur settings).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["FAMILY_ORDER", "FAMILY_TITLE", "SEVERITY_AXIS", "severity_label", "severity_of"]

# Family -> the config key whose value grows with the severity of the distortion.
_SEVERITY_KEY = {"mask": "p", "noise": "sigma", "blur": "sigma"}
FAMILY_ORDER = ("mask", "noise", "blur")
FAMILY_TITLE = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}
# Blur ticks read "(kernel, sigma)" (see severity_label), so the axis names both.
SEVERITY_AXIS = {"mask": "mask ratio p", "noise": "noise σ", "blur": "blur (kernel size, σ)"}


def severity_of(spec: Mapping[str, object]) -> float:
    """Severity of a distortion config entry: the mask ratio p, or the noise or blur sigma.

    Args:
        spec: A distortion entry, e.g. ``{"family": "blur", "kernel": 37, "sigma": 9.0}``;
            keys other than the family's parameters (``stands_for``) are ignored.

    Returns:
        The value that grows with the strength of the distortion (9.0 in the example).

    Raises:
        ValueError: If the family is unknown or its severity parameter is missing.
    """
    family = spec.get("family")
    if family not in _SEVERITY_KEY:
        raise ValueError(
            f"distortion spec {dict(spec)!r}: unknown family {family!r} "
            f"(known: {sorted(_SEVERITY_KEY)})"
        )
    key = _SEVERITY_KEY[str(family)]
    if key not in spec:
        raise ValueError(f"distortion spec {dict(spec)!r} lacks the key {key!r}")
    return float(spec[key])  # type: ignore[arg-type]


def severity_label(spec: Mapping[str, object]) -> str:
    """Tick label of a distortion config entry: ``"0.9"``, ``"0.5"`` or ``"(37, 9)"`` for blur.

    Args:
        spec: A distortion entry, as for :func:`severity_of`.

    Returns:
        The severity in shortest form; blur gives ``(kernel size, sigma)``, since the paper
        names its blur settings by both.

    Raises:
        ValueError: If the family is unknown or a parameter is missing.
    """
    value = severity_of(spec)
    if spec["family"] == "blur":
        if "kernel" not in spec:
            raise ValueError(f"distortion spec {dict(spec)!r} lacks the key 'kernel'")
        return f"({int(spec['kernel'])}, {value:g})"  # type: ignore[call-overload]
    return f"{value:g}"
