"""One writer per run folder: a training job holds its run folders exclusively while it writes.

Snakemake's lock does not stop a second run started with ``--nolock`` or from another working
directory sharing ``results/`` through a link; two jobs would resume each other's checkpoints
and interleave ``log.jsonl``. So every training job holds its run folders from its start to its
last output (:func:`~robustkd.engine.jobsetup.holds_run_folders`; :func:`~robustkd.engine.loop.
train` holds its own), and a second writer stops at once with :class:`RunFolderBusy`, naming
the folder and the holder (host, pid, since when).

The lock is the file :data:`LOCK_NAME` in the folder; its one JSON line names the holder. The
exclusion itself comes from the kernel where it can:

- With ``flock`` (local filesystems; NFS, Lustre mounted with ``flock``, GPFS, BeeGFS), the
  holder keeps an exclusive ``flock`` on the file. The kernel drops it when the holder dies,
  however it dies, so a lock file whose ``flock`` is free is a leftover whatever host it names:
  it is taken over with a warning naming the old holder. (NFS mounted with
  ``local_lock=flock|all`` or ``nolock`` keeps locks per host: hosts are not excluded there.)
- Where ``flock`` fails (``ENOLCK``, ``EOPNOTSUPP``, ...), the file's existence is the lock,
  created as a hard link of a complete file (atomic, never half-written). A leftover naming
  this host and a pid that no longer runs is taken over with a warning. One naming another host
  is refused: nothing tells whether that process still runs, and no age proves it gone (a run
  trains for days); the message names the file to delete once that job is known to be over. A
  malformed lock file is refused too (:class:`RunLockError` naming it).

The lock is released and its file removed when the job leaves the folder: normally, on an
exception, and on preemption (SIGTERM/SIGUSR1 become :class:`~robustkd.engine.preemption.
Preempted`: in the training loop after a checkpoint, outside it at once).

Under ``torchrun`` only rank 0, the rank that writes, holds the lock; a busy folder stops it
before the first collective, and torchrun then stops the other ranks. Holds are reentrant
within a process: a job holds its folders, and ``train`` holds its folder again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustkd.engine.distributed import context
from robustkd.engine.preemption import PREEMPT_SIGNALS, Preempted
from robustkd.errors import RobustKDError
from robustkd.provenance import now_iso

__all__ = [
    "LOCK_NAME",
    "LockHolder",
    "RunFolderBusy",
    "RunLock",
    "RunLockError",
    "hold_run_folder",
    "hold_run_folders",
    "read_lock",
]

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
# flock errors that mean "this filesystem does not lock", not "someone holds it".
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
# Tries before giving up when the file keeps changing under us (a holder releasing it).
_ATTEMPTS = 5


class RunLockError(RobustKDError):
    """A run folder's lock file cannot be read, written or taken; the message names the file."""


class RunFolderBusy(RunLockError):
    """Another process writes the run folder; the message names the folder and the holder."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder, as its lock file says.

    Attributes:
        host: The holder's host name.
        pid: The holder's process id on that host.
        since: When it took the lock (ISO 8601, UTC).
    """

    host: str
    pid: int
    since: str

    def __str__(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since}"

    def alive(self) -> bool:
        """Whether the holder may still run: False only for a pid of this host that is gone.

        A holder on another host counts as alive: nothing here can tell.
        """
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            pass
        return True


def _parse(text: str, path: Path) -> LockHolder:
    """The holder a lock file's text names.

    Raises:
        RunLockError: ``text`` is not one JSON object with a string ``host``, a positive integer
            ``pid`` and a string ``since``; names ``path``.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        data, why = None, f"not JSON ({exc})" if text.strip() else "empty"
    else:
        why = f"not a JSON object: {text.strip()[:80]!r}"
    if isinstance(data, dict):
        host, pid, since = data.get("host"), data.get("pid"), data.get("since")
        if not isinstance(host, str) or not host:
            why = f"no host name: host = {host!r}"
        elif isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            why = f"no process id: pid = {pid!r}"
        elif not isinstance(since, str):
            why = f"no start time: since = {since!r}"
        else:
            return LockHolder(host, pid, since)
    raise RunLockError(
        f"{path}: not a robustkd run lock ({why}); if no job is writing {path.parent}, "
        "delete the file and rerun"
    )


def read_lock(path: str | os.PathLike[str]) -> LockHolder | None:
    """The holder a lock file (``<run folder>/run.lock``) names; None if there is no file.

    Raises:
        RunLockError: The file is empty or malformed (names the file and what is wrong).
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    return _parse(text, path)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class RunLock:
    """This process's exclusive hold of one run folder; :func:`hold_run_folder` is the way in."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        """Name the run folder (created when acquired); nothing is locked until then."""
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.holder = LockHolder(socket.gethostname(), os.getpid(), now_iso())
        self.kernel_lock = False  # True: held with flock; False: the file is the lock
        self._fd: int | None = None
        self._held = False

    def _record(self) -> bytes:
        return (json.dumps(asdict(self.holder)) + "\n").encode()

    def _busy(self, holder: LockHolder | str, hint: str = "") -> RunFolderBusy:
        return RunFolderBusy(
            f"run folder {self.run_dir} is being written by another training job ({holder}; "
            f"lock file {self.path}): two writers would resume each other's checkpoints and "
            f"interleave log.jsonl, so this one stops. Wait for that job to finish, or stop "
            f"it{hint}."
        )

    def acquire(self) -> None:
        """Take the folder, or stop.

        Raises:
            RunFolderBusy: Another live process holds it (names folder, host, pid, since).
            RunLockError: Without ``flock``, the lock file is malformed; or it cannot be made
                (no permission, no hard links without ``flock``, ...).
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self._acquire_flock():
                self._acquire_file()
        except OSError as exc:  # a read-only folder, a full disk, ...
            raise RunLockError(f"{self.path}: cannot lock the run folder: {exc}") from exc
        self._held = True

    def _acquire_flock(self) -> bool:
        """Hold the file with ``flock``; False when the filesystem does not support it."""
        for _ in range(_ATTEMPTS):
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR), False
                except FileNotFoundError:  # released in between
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode(errors="replace")
                os.close(fd)
                try:
                    holder: LockHolder | str = _parse(text, self.path)
                except RunLockError as exc:  # it may be writing its record this instant
                    holder = f"holder not known: {exc}"
                ended = isinstance(holder, LockHolder) and not holder.alive()
                hint = " (its pid has ended; processes it started hold the lock until they end)"
                raise self._busy(holder, hint if ended else "") from None
            except OSError as exc:
                os.close(fd)
                if created:  # an empty file would read as a malformed lock
                    self.path.unlink(missing_ok=True)
                if exc.errno in _NO_FLOCK:
                    log.info("%s: no flock here (%s); the file is the lock", self.path, exc)
                    return False
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # a holder removed the file between our open and flock: again
        else:
            raise RunLockError(f"{self.path}: the lock file kept changing; try again")
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        if text.strip():
            try:
                old: LockHolder | str = _parse(text, self.path)
            except RunLockError as exc:
                old = str(exc)
            log.warning(
                "%s: taking over the lock of run folder %s from a job that no longer holds it "
                "(%s); it ended without releasing it (killed?)",
                self.path,
                self.run_dir,
                old,
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._record(), 0)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd, self.kernel_lock = fd, True
        return True

    def _acquire_file(self) -> None:
        """Create the lock file exclusively; take over a leftover of a dead pid of this host."""
        for _ in range(_ATTEMPTS):
            if self._create_exclusive():
                return
            holder = read_lock(self.path)  # raises on a malformed file
            if holder is None:
                continue  # released in between
            here = holder.host == socket.gethostname()
            if not (here and (holder.pid == os.getpid() or not holder.alive())):
                hint = (
                    ""
                    if here
                    else ". This filesystem has no flock, so a process on another host cannot "
                    f"be checked: once that job is known to be over, delete {self.path} and rerun"
                )
                raise self._busy(holder, hint)
            log.warning(
                "%s: taking over the lock of run folder %s from %s, which no longer runs",
                self.path,
                self.run_dir,
                holder,
            )
            self.path.unlink(missing_ok=True)
        raise RunLockError(f"{self.path}: the lock file kept changing; try again")

    def _create_exclusive(self) -> bool:
        """Create the lock file holding our record, unless it exists; True if created."""
        tmp = self.run_dir / f".{LOCK_NAME}.{self.holder.host}.{self.holder.pid}.tmp"
        try:
            tmp.write_bytes(self._record())  # removed below if the disk is full half-way
            os.link(tmp, self.path)  # atomic and exclusive, NFS included; never half-written
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock; idempotent."""
        if not self._held:
            return
        self._held = False
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if _same_file(fd, self.path):
                    self.path.unlink()  # while still locked: a newcomer then makes a new file
            finally:
                os.close(fd)
            return
        try:
            ours = read_lock(self.path) == self.holder
        except RunLockError:
            ours = False
        if ours:
            self.path.unlink(missing_ok=True)
        else:
            log.warning("%s: no longer names this process; left alone", self.path)


# Folder (real path) -> (the process that holds it, its lock).
_HELD: dict[str, tuple[int, RunLock]] = {}


def _raise_preempted(signum: int, frame: object) -> None:
    raise Preempted(
        f"{signal.Signals(signum).name} received outside the training loop; the run folder's "
        "lock is released; rerun the job to resume from its last checkpoint"
    )


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Make preemption signals with their default action raise :class:`Preempted` instead."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in PREEMPT_SIGNALS:
            if signal.getsignal(sig) == signal.SIG_DFL:
                previous[sig] = signal.signal(sig, _raise_preempted)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def hold_run_folder(run_dir: str | os.PathLike[str]) -> Iterator[RunLock | None]:
    """Hold ``run_dir`` exclusively for the ``with`` block (rank 0 only; reentrant).

    Args:
        run_dir: The run folder (created if missing).

    Yields:
        The lock, or None on a data-parallel rank other than 0 (which holds nothing).

    Raises:
        RunFolderBusy: Another live process holds the folder (names it and the holder).
        RunLockError: The lock file is malformed or cannot be taken (names the file).
        Preempted: SIGTERM or SIGUSR1 arrived in the block (outside the training loop, whose
            own handling applies inside it); the folder is released first.
    """
    if not context().main:
        yield None
        return
    key = os.path.realpath(run_dir)
    pid = os.getpid()
    held = _HELD.get(key)
    if held is not None and held[0] == pid:  # held by an enclosing block of this process
        yield held[1]
        return
    lock = RunLock(run_dir)
    lock.acquire()
    _HELD[key] = (pid, lock)
    try:
        with _signals_raise():
            yield lock
    finally:
        del _HELD[key]
        lock.release()


@contextmanager
def hold_run_folders(run_dirs: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Hold every folder of a job for the ``with`` block, as :func:`hold_run_folder` does.

    The folders are taken in order; if one is busy (:class:`RunFolderBusy`) or its lock file
    malformed (:class:`RunLockError`), those already taken are released and the error raised
    before the job does any work.
    """
    with ExitStack() as stack:
        for run_dir in dict.fromkeys(os.path.realpath(d) for d in run_dirs):
            stack.enter_context(hold_run_folder(run_dir))
        yield
