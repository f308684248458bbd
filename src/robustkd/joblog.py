"""Logging set-up shared by every workflow script: one log file per job, ending with its error.

Snakemake points to a failed job's log (``logs/<rule>/...log``); on a cluster that file is all
there is. :func:`configure_job_logging` therefore also installs an exception hook: an exception
that ends the process is logged, with its traceback, as the log's last record (and on stderr).

An interrupt (Ctrl-C: SIGINT, Python's ``KeyboardInterrupt``) is not a fault: it ends the job
with one line instead, which names the checkpoint a rerun resumes from. The training loop tells
this module which checkpoint that is (:func:`note_checkpoint`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import TracebackType

__all__ = ["configure_job_logging", "interrupted_message", "log_uncaught", "note_checkpoint"]

log = logging.getLogger("robustkd.job")

# The checkpoint of the run this process trains now, and the step it holds (None: none yet).
_checkpoint: tuple[Path, int | None] | None = None


def note_checkpoint(path: str | os.PathLike[str] | None, step: int | None) -> None:
    """Record the checkpoint file of the run this process trains, for an interrupt's message.

    The training loop calls it when a run starts (``step``: the step it resumed from, or None)
    and each time the checkpoint is written.

    Args:
        path: The run's checkpoint file; None: this process trains nothing (any more).
        step: The step the file holds, or None where this run has not written it yet.
    """
    global _checkpoint
    _checkpoint = None if path is None else (Path(path), step)


def interrupted_message() -> str:
    """The one line that ends an interrupted job: where its checkpoint is, and what a rerun does."""
    head = "interrupted (SIGINT, Ctrl-C)"
    if _checkpoint is None:
        return (
            f"{head}; rerun the same command to run this job again (a training job resumes "
            "from its last checkpoint)"
        )
    path, step = _checkpoint
    if step is None:
        return (
            f"{head} before the first checkpoint of {path}; rerun the same command to start "
            "this run again (runs already finished are not retrained)"
        )
    return f"{head}: checkpoint of step {step} in {path}; rerun the same command to resume from it"


def log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A ``sys.excepthook`` that logs the exception and its traceback (level CRITICAL).

    A ``KeyboardInterrupt`` is logged as one line instead (level ERROR): see
    :func:`interrupted_message`.

    Args:
        kind: The exception's class.
        value: The exception.
        tb: Its traceback.
    """
    if issubclass(kind, KeyboardInterrupt):
        log.error("%s", interrupted_message())
    else:
        log.critical("job failed: %s: %s", kind.__name__, value, exc_info=(kind, value, tb))
    for handler in logging.getLogger().handlers:
        handler.flush()


def configure_job_logging(
    path: str | os.PathLike[str] | None,
    level: int = logging.INFO,
    *,
    append: bool = False,
    tag: str = "",
) -> None:
    """Send the ``logging`` records of this process to ``path`` (and stderr).

    Also sets ``sys.excepthook`` to :func:`log_uncaught`, so an exception that ends the job
    lands in ``path`` with its traceback instead of only on the console.

    Args:
        path: The job's log file (Snakemake's ``log[0]``), or None for stderr only.
        level: The minimum level recorded.
        append: Add to ``path`` instead of starting it afresh (the ranks of a torchrun job).
        tag: Written before every message, e.g. ``"[rank 1/2] "``.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not append:
            Path(path).write_text("")
        # Always opened for appending (O_APPEND): the ranks of a torchrun job write to the same
        # file, and a handle that kept its own position would write over their lines.
        handlers.append(logging.FileHandler(path, mode="a"))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
    sys.excepthook = log_uncaught
