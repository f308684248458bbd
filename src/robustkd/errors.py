"""Exceptions raised by robustkd; each message names the offending file, key or value."""

__all__ = ["ConfigError", "DataError", "RobustKDError"]


class RobustKDError(Exception):
    """Base class of every error robustkd raises on purpose."""


class ConfigError(RobustKDError):
    """The configuration is invalid; the message names the key."""


class DataError(RobustKDError):
    """Raw or prepared data is missing, corrupt or malformed; the message names the file."""
