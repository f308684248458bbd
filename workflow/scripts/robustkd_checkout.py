"""Import robustkd from this checkout's ``src/``, or stop: every workflow script starts here.

    from robustkd_checkout import use_checkout_package
    use_checkout_package(snakemake)

Snakemake puts this folder on ``sys.path`` of a script job; ``common.smk`` loads this file by
its path. It lives outside the package on purpose: the code that decides which copy of
robustkd runs cannot be part of the copy it checks.

The checkout's ``src/`` goes first on ``sys.path``; after the import, the package's resolved
folder must be ``<checkout>/src/robustkd`` (resolved too, so a ``src`` linked elsewhere counts
as the checkout's). Otherwise (another copy was imported before the job's code ran, e.g. by a
``.pth`` or ``sitecustomize``, or the checkout has no ``src/robustkd``) the job stops with an
error naming both folders, so a provenance record can never name the checkout's commit for
code that did not come from it. To run an installed robustkd on purpose, set
``ROBUSTKD_USE_INSTALLED=1``: the checkout's ``src/`` is then not put on the path, and every
record says ``installed_on_purpose``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

USE_INSTALLED_ENV = "ROBUSTKD_USE_INSTALLED"  # robustkd.codesource.USE_INSTALLED_ENV
CHECKOUT = Path(__file__).resolve().parents[2]
INTERRUPTED_WHILE_STARTING = (
    "interrupted (SIGINT, Ctrl-C) while the job started; rerun the same command to run it again"
)


class CheckoutPackageError(RuntimeError):
    """The job would run a robustkd that is not this checkout's (the message names both)."""


def _use_installed() -> bool:
    return os.environ.get(USE_INSTALLED_ENV, "") not in ("", "0")


def _log_uncaught_to(log: str) -> None:
    """Until the job configures logging, append an uncaught exception to its log file.

    An interrupt (Ctrl-C) while the job starts (its imports take seconds) is one line, without
    a traceback, as it is later (:func:`robustkd.joblog.log_uncaught`).
    """

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        if issubclass(kind, KeyboardInterrupt):
            line = f"{INTERRUPTED_WHILE_STARTING}\n"
            with open(log, "a") as fh:
                fh.write(line)
            sys.stderr.write(line)
            return
        with open(log, "a") as fh:
            fh.write("".join(traceback.format_exception(kind, value, tb)))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = hook


def use_checkout_package(snakemake: Any = None, checkout: Path = CHECKOUT) -> Path:
    """Import robustkd from ``checkout/src`` and return the package's folder.

    With a ``snakemake`` object that names a log, an exception that ends the job before it
    configures logging (this function's error, a failing import) is appended to that log with
    its traceback (:func:`robustkd.joblog.configure_job_logging` then takes over).

    Args:
        snakemake: The job's ``snakemake`` object, or None (``common.smk``).
        checkout: The checkout whose package must run (this file's checkout).

    Returns:
        The imported package's resolved folder.

    Raises:
        CheckoutPackageError: The imported robustkd is not the checkout's (and
            ``ROBUSTKD_USE_INSTALLED`` is not set), or no robustkd can be imported.
    """
    logs = list(getattr(snakemake, "log", []) or [])
    if logs:
        _log_uncaught_to(str(logs[0]))
    src = checkout / "src"
    if _use_installed():
        expected = None
    else:
        expected = (src / "robustkd").resolve()
        # First, even if already further down (Snakemake appends its own process's path).
        sys.path[:] = [str(src)] + [p for p in sys.path if p != str(src)]
    try:
        package = Path(importlib.import_module("robustkd").__file__).resolve().parent
    except ImportError as exc:
        package, error = None, f"cannot import robustkd ({exc})"
    if package is not None and (expected is None or package == expected):
        return package
    if package is not None:
        error = (
            f"this job would run the robustkd package at {package}, not the checkout's {expected}"
        )
    hint = (
        f"run from a checkout whose src/robustkd exists, remove the other copy from the "
        f"environment, or set {USE_INSTALLED_ENV}=1 to run an installed robustkd on purpose"
        if expected is not None
        else f"{USE_INSTALLED_ENV} is set: install robustkd, or unset it to use {src}"
    )
    raise CheckoutPackageError(f"{error}; {hint}")
