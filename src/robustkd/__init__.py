"""robustkd: a Snakemake pipeline for distortion-robust knowledge distillation."""

from robustkd import codesource

__all__ = ["__version__"]

__version__ = "0.1.0"

# Provenance records the source this process compiles (robustkd.codesource): from here on every
# robustkd module is hashed as it is imported.
codesource.install()
