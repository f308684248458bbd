"""Logging set-up shared by every workflow script: one log file per job."""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["configure_job_logging"]


def configure_job_logging(
    path: str | os.PathLike[str] | None,
    level: int = logging.INFO,
    *,
    append: bool = False,
    tag: str = "",
) -> None:
    """Send the ``logging`` records of this process to ``path`` (and stderr).

    Args:
        path: The job's log file (Snakemake's ``log[0]``), or None for stderr only.
        level: The minimum level recorded.
        append: Add to ``path`` instead of starting it afresh (the ranks of a torchrun job).
        tag: Written before every message, e.g. ``"[rank 1/2] "``.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a" if append else "w"))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
