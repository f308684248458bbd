"""Datasets: raw formats, the miniature generator and the prepared-dataset contract.

The prepared-dataset contract (:mod:`robustkd.data.prepared`) is re-exported here; the dataset
readers are listed by name in :mod:`robustkd.data.registry`.
"""

from robustkd.data.prepared import PreparedDataset, PreparedWriter

__all__ = ["PreparedDataset", "PreparedWriter"]
