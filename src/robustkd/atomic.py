"""Atomic outputs: write under a temporary name beside the target, rename when complete.

A killed or failed job therefore never leaves a file or folder that looks finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "make_temp_dir",
    "save_npy_atomic",
    "write_json_atomic",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(dest: str | os.PathLike[str]) -> Path:
    """Create an empty temporary folder beside ``dest`` (same filesystem, so renames are atomic).

    Unlike :func:`tempfile.mkdtemp`, the folder gets the usual permissions (0777 & ~umask), so
    the folder it becomes is readable by the group as any other output.

    Args:
        dest: The final folder the temporary one will be renamed to.

    Returns:
        The temporary folder (named ``.<dest name>.partial-XXXX``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    Args:
        path: Destination file; its folder is created if needed.
        data: The content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and an atomic rename.

    Args:
        path: Destination file; its folder is created if needed.
        text: The content.
    """
    atomic_write_bytes(path, text.encode())


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically.

    Args:
        path: Destination file.
        obj: A JSON-serialisable object.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` to ``path`` through a temporary file and an atomic rename.

    Args:
        path: Destination file; its folder is created if needed.
        array: The array (``np.save`` format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
