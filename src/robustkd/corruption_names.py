"""The corruption benchmark's names, without importing the corruptions themselves (or torch).

The corruptions (:mod:`robustkd.corruptions`) and the corruption table
(:mod:`robustkd.report.corruption_values`, whose mCE is defined on exactly the 15 benchmark
corruptions) share these lists; the report reads them without loading torch.
"""

from __future__ import annotations

__all__ = ["BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTIONS"]

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
