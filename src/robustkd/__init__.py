"""robustkd: a Snakemake pipeline for distortion-robust knowledge distillation."""

__all__ = ["__version__"]

__version__ = "0.1.0"
