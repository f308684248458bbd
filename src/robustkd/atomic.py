"""Atomic outputs: write under a temporary name beside the target, rename when complete.

A killed or failed job therefore never leaves a file or folder that looks finished. A write
that fails (a full disk, a quota, a read-only folder, torch's ``[enforce fail at
inline_container.cc] unexpected pos``) removes its temporary file and raises
:class:`~robustkd.errors.OutputError` naming the file and the cause, with the free space of
its filesystem when the disk is full (:func:`write_failure`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from robustkd.errors import OutputError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "disk_full",
    "make_temp_dir",
    "raise_write_failure",
    "save_npy_atomic",
    "write_failure",
    "write_json_atomic",
    "write_with",
    "writing",
]

# Errors of a full filesystem, and what to say about them.
_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
# What torch's zip writer says when a write of its own failed (it hides the OSError).
_TORCH_WRITE = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")
# Below this many free bytes, a failed write without an errno (torch's writer, numpy's short
# write "30000 requested and 8176 written") is put down to a full disk.
_LOW_SPACE = 64 * 2**20


def _mount_of(folder: Path) -> tuple[Path, int]:
    """The mount point holding ``folder`` (or its nearest parent that exists) and its free bytes.

    The free bytes are -1 when they cannot be read.
    """
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # not even that can be read: say nothing about the free space
        free = -1
    mount = folder.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return mount, free


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first :class:`OSError` of ``exc`` and the exceptions it was raised from or during."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception in its chain) says the disk or a quota is full."""
    os_exc = _os_error_in(exc)
    return os_exc is not None and os_exc.errno in _FULL


def write_failure(
    path: str | os.PathLike[str], exc: BaseException, *, written: int | None = None
) -> OutputError | None:
    """An error naming ``path`` and the cause, if ``exc`` is a failed write; else None.

    A failed write is an :class:`OSError` (or one in ``exc``'s chain) or torch's writer error
    (``[enforce fail at inline_container.cc:...] unexpected pos``). A full disk or quota is
    named with the free bytes of the filesystem and its mount point.

    Args:
        path: The file (or folder) being written.
        exc: The exception the write raised.
        written: Bytes written before it failed (its temporary file's size), if known.

    Returns:
        The error to raise (``from exc``), or None when ``exc`` is something else.
    """
    if isinstance(exc, OutputError):  # described already: again, for ``path`` (a folder)
        if exc.__cause__ is None:
            return exc
        exc = exc.__cause__
    os_exc = _os_error_in(exc)
    torch_msg = str(exc) if any(m in str(exc) for m in _TORCH_WRITE) else ""
    if os_exc is None and not torch_msg:
        return None
    mount, free = _mount_of(Path(path).parent)
    where = f"{free:,} bytes free on {mount}" if free >= 0 else f"on {mount}"
    if written is not None:
        where = f"{where} after writing {written:,} bytes of it"
    fix = "free space there (or move the output folder to a larger disk) and rerun"
    code = os_exc.errno if os_exc is not None else None
    if code in _FULL:
        cause = f"{_FULL[code]} ({where}); {fix}"
    elif code is not None:
        assert os_exc is not None
        cause = f"{os_exc.strerror or os_exc} (on {mount})"
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            cause += "; make the folder writable or write elsewhere, then rerun"
    else:  # torch's writer, or a short write (numpy's tofile): no errno to tell the cause
        said = f"torch could not write it ({torch_msg})" if torch_msg else f"{os_exc}"
        if 0 <= free < _LOW_SPACE:
            cause = f"{said}: no space left on device ({where}); {fix}"
        else:
            cause = f"{said} ({where})"
    err = OutputError(f"{path}: cannot write it: {cause}; nothing was left half-written")
    low = 0 <= free < _LOW_SPACE
    err.errno = code if code is not None else (errno.ENOSPC if low else errno.EIO)
    return err


def raise_write_failure(path: str | os.PathLike[str], exc: BaseException) -> None:
    """Raise :func:`write_failure`'s error for ``exc`` (``from exc``) if ``exc`` is one.

    Returns without raising when ``exc`` is not a failed write (the caller re-raises it).
    """
    err = write_failure(path, exc)
    if err is not None and err is not exc:
        raise err from exc


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

    Raises:
        OutputError: It cannot be made (a full disk, a read-only folder, ...).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        tmp.chmod(0o777 & ~_umask())
    except OSError as exc:
        raise_write_failure(dest, exc)
        raise
    return tmp


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failed write inside the block into :func:`write_failure`'s error for ``path``.

    For writes into a temporary folder (:func:`make_temp_dir`) whose owner removes it.

    Raises:
        OutputError: A write of the block failed.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        raise_write_failure(path, exc)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` when complete.

    The file is created with the usual permissions (0666 & ~umask). If the block raises, the
    temporary file is removed; a failed write (full disk, quota, read-only folder, torch's
    writer error) becomes an :class:`~robustkd.errors.OutputError` naming ``path`` and the
    cause.

    Args:
        path: Destination file; its folder is created if needed.

    Yields:
        The open binary file.

    Raises:
        OutputError: The write failed; nothing is left at ``path`` or beside it.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        written = None
        if tmp is not None:  # the free space and the size reached, before the file goes
            written = os.stat(tmp).st_size if os.path.exists(tmp) else None
        err = write_failure(path, exc, written=written)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if err is not None and err is not exc:
            raise err from exc
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    Args:
        path: Destination file; its folder is created if needed.
        data: The content.

    Raises:
        OutputError: The write failed (the message names ``path`` and the cause).
    """
    with atomic_write(path) as fh:
        fh.write(data)


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` atomically with ``writer(file)`` (e.g. ``torch.save(obj, file)``).

    Args:
        path: Destination file; its folder is created if needed.
        writer: Writes the content to the open binary file it is given.

    Raises:
        OutputError: The write failed (the message names ``path`` and the cause).
    """
    with atomic_write(path) as fh:
        writer(fh)


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

    Raises:
        OutputError: The write failed (the message names ``path`` and the cause).
    """
    import numpy as np  # here: most writers (the report's page jobs) need no numpy

    write_with(path, lambda fh: np.save(fh, array))
