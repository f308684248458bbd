"""Logging set-up shared by every workflow script: one log file per job."""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["configure_job_logging"]


def configure_job_logging(path: str | os.PathLike[str] | None, level: int = logging.INFO) -> None:
    """Send the ``logging`` records of this process to ``path`` (and stderr).

    Args:
        path: The job's log file (Snakemake's ``log[0]``), or None for stderr only.
        level: The minimum level recorded.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
