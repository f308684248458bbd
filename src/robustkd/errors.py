"""Exceptions raised by robustkd; each message names the offending file, key or value."""

__all__ = ["ConfigError", "DataError", "OutputError", "PlanError", "RobustKDError"]


class RobustKDError(Exception):
    """Base class of every error robustkd raises on purpose."""


class ConfigError(RobustKDError):
    """The configuration is invalid; the message names the key."""


class DataError(RobustKDError):
    """Raw or prepared data is missing, corrupt or malformed; the message names the file."""


class OutputError(RobustKDError, OSError):
    """An output could not be written; the message names the file and the cause.

    Also an :class:`OSError` (``errno`` is the cause's), so that code catching the error of a
    failed write still catches it.
    """


class PlanError(RobustKDError):
    """A plan cannot be made (Snakemake failed, a dataset's size is unknown, bad throughput)."""
