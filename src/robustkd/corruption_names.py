"""The corruption benchmark's names, without importing the corruptions themselves (or torch).

The corruptions (:mod:`robustkd.corruptions`) and the corruption table
(:mod:`robustkd.report.corruption_values`, whose mCE is defined on exactly the 15 benchmark
corruptions) share these lists; the report reads them without loading torch.
"""

from __future__ import annotations

__all__ = ["BENCHMARK_CORRUPTIONS", "CORRUPTION_FAMILIES", "EXTRA_CORRUPTIONS", "corruption_family"]

BENCHMARK_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The benchmark's 15 corruptions in the published order (the order of the released files)."""

EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "saturate")
"""Extra (validation) corruptions of the benchmark that we implement (spatter is left out)."""

CORRUPTION_FAMILIES = {
    "gaussian_noise": "noise",
    "shot_noise": "noise",
    "impulse_noise": "noise",
    "defocus_blur": "blur",
    "glass_blur": "blur",
    "motion_blur": "blur",
    "zoom_blur": "blur",
    "snow": "weather",
    "frost": "weather",
    "fog": "weather",
    "brightness": "weather",
    "contrast": "digital",
    "elastic_transform": "digital",
    "pixelate": "digital",
    "jpeg_compression": "digital",
    "speckle_noise": "noise",
    "gaussian_blur": "blur",
    "saturate": "digital",
}
"""Each corruption's benchmark group, as the corruptions register it (a test checks the two)."""


def corruption_family(name: str) -> str:
    """:func:`robustkd.corruptions.corruption_family` without torch (the CRAFT report's)."""
    if name not in CORRUPTION_FAMILIES:
        available = [*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS]
        raise ValueError(f"unknown corruption {name!r} (available: {available})")
    return CORRUPTION_FAMILIES[name]
