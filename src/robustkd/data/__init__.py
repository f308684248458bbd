"""Datasets: raw formats, the miniature generator and the prepared-dataset contract.

Importing this package registers every dataset module with :mod:`robustkd.data.registry`.
"""

from robustkd.data import camelyon17, cifar, imagenet100, resisc45, stl10  # noqa: F401
from robustkd.data.prepared import PreparedDataset, PreparedWriter
from robustkd.data.registry import available_datasets, get_dataset

__all__ = ["PreparedDataset", "PreparedWriter", "available_datasets", "get_dataset"]
