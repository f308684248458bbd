"""The run folder lock (robustkd.engine.runlock) on hand-made lock files and holders.

A second holder is played by this process through a separate open file description (``flock``
excludes those even within one process); the real two-process cases, a killed job's leftover
and a preempted job, are in ``tests/test_resume.py``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from robustkd.engine import runlock
from robustkd.engine.distributed import DistContext
from robustkd.engine.jobsetup import holds_run_folders
from robustkd.engine.preemption import Preempted
from robustkd.engine.runlock import (
    LOCK_NAME,
    LockHolder,
    RunFolderBusy,
    RunLockError,
    hold_run_folder,
    read_lock,
)

HOST = socket.gethostname()


def _dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(run_dir: Path, text: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(text)
    return path


def _record(host: str = HOST, pid: int = 1, since: str = "2024-05-01T12:00:00+00:00") -> str:
    return json.dumps({"host": host, "pid": pid, "since": since}) + "\n"


@pytest.fixture
def no_flock(monkeypatch):
    """A filesystem without flock: the lock file's existence is the lock."""

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", refuse)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("host=a pid=3\n", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"pid": 12, "since": "t"}', "no host name"),
        ('{"host": "a", "pid": "12", "since": "t"}', "no process id: pid = '12'"),
        ('{"host": "a", "pid": 0, "since": "t"}', "no process id: pid = 0"),
        ('{"host": "a", "pid": 12}', "no start time"),
    ],
)
def test_a_malformed_lock_file_is_an_error_naming_the_file(tmp_path, text, why):
    path = _write(tmp_path / "run", text)
    with pytest.raises(RunLockError, match="not a robustkd run lock") as err:
        read_lock(path)
    assert str(path) in str(err.value) and why in str(err.value)
    assert "delete the file" in str(err.value)


def test_a_well_formed_lock_file_names_its_holder(tmp_path):
    path = _write(tmp_path / "run", _record(host="node7", pid=4242))
    holder = read_lock(path)
    assert holder == LockHolder("node7", 4242, "2024-05-01T12:00:00+00:00")
    assert str(holder) == "host node7, pid 4242, since 2024-05-01T12:00:00+00:00"
    assert read_lock(tmp_path / "none" / LOCK_NAME) is None


def test_the_lock_names_this_process_while_held_and_is_gone_after(tmp_path):
    run = tmp_path / "run"
    with hold_run_folder(run) as lock:
        assert lock is not None and lock.kernel_lock
        holder = read_lock(run / LOCK_NAME)
        assert (holder.host, holder.pid) == (HOST, os.getpid())
        with hold_run_folder(run) as again:  # reentrant: a job holds it, then train() again
            assert again is lock
        assert read_lock(run / LOCK_NAME) == holder
    assert not (run / LOCK_NAME).exists()


def test_a_held_folder_stops_a_second_writer_naming_folder_and_holder(tmp_path):
    run = tmp_path / "run"
    path = _write(run, _record(host="node7", pid=4242))
    other = os.open(path, os.O_RDWR)  # another writer's hold
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderBusy) as err, hold_run_folder(run):
            pytest.fail("the second writer got in")
        assert str(err.value).startswith(
            f"run folder {run} is being written by another training job "
            f"(host node7, pid 4242, since 2024-05-01T12:00:00+00:00; lock file {path})"
        )
        # Its record being written this instant (empty file): busy all the same.
        path.write_text("")
        with pytest.raises(RunFolderBusy, match="holder not known") as err, hold_run_folder(run):
            pytest.fail("the second writer got in")
        assert str(run) in str(err.value)
    finally:
        os.close(other)
    assert path.exists()  # the refused writer left the holder's file alone


@pytest.mark.parametrize("leftover", ["dead pid", "other host", "malformed"])
def test_with_flock_a_lock_nobody_holds_is_taken_over_with_a_warning(tmp_path, caplog, leftover):
    """The kernel's lock is free: whoever the file names has gone (killed without releasing)."""
    dead = _dead_pid()
    text, named = {
        "dead pid": (_record(pid=dead), f"host {HOST}, pid {dead}, since"),
        "other host": (_record(host="elsewhere", pid=4242), "host elsewhere, pid 4242, since"),
        "malformed": ('{"host": "node7"', "not a robustkd run lock (not JSON"),
    }[leftover]
    run = tmp_path / "run"
    _write(run, text)
    with hold_run_folder(run):
        assert read_lock(run / LOCK_NAME).pid == os.getpid()
    assert f"taking over the lock of run folder {run}" in caplog.text and named in caplog.text
    assert not (run / LOCK_NAME).exists()


def test_without_flock_a_malformed_lock_file_stops_the_job_naming_it(tmp_path, no_flock):
    run = tmp_path / "run"
    path = _write(run, "garbage\n")
    with pytest.raises(RunLockError, match="not a robustkd run lock") as err, hold_run_folder(run):
        pytest.fail("a malformed lock was ignored")
    assert str(path) in str(err.value)
    assert path.read_text() == "garbage\n"


def test_without_flock_the_file_is_the_lock(tmp_path, no_flock, caplog):
    run = tmp_path / "run"
    # Free: taken and released.
    with hold_run_folder(run) as lock:
        assert not lock.kernel_lock
        assert read_lock(run / LOCK_NAME).pid == os.getpid()
    assert not (run / LOCK_NAME).exists()

    # A live process of this host holds it: refused, naming it.
    _write(run, _record(pid=os.getppid()))
    with pytest.raises(RunFolderBusy, match=f"pid {os.getppid()}, since"), hold_run_folder(run):
        pytest.fail("the second writer got in")

    # A process of another host: refused too (it cannot be checked), saying what to delete.
    _write(run, _record(host="elsewhere", pid=4242))
    with pytest.raises(RunFolderBusy, match="host elsewhere, pid 4242") as err:
        with hold_run_folder(run):
            pytest.fail("the second writer got in")
    assert f"delete {run / LOCK_NAME} and rerun" in str(err.value)

    # A pid of this host that has ended: taken over, with a warning.
    dead = _dead_pid()
    _write(run, _record(pid=dead))
    with hold_run_folder(run):
        assert read_lock(run / LOCK_NAME).pid == os.getpid()
    assert f"from host {HOST}, pid {dead}," in caplog.text and "no longer runs" in caplog.text
    assert not (run / LOCK_NAME).exists()


def test_the_lock_is_released_on_an_exception(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ZeroDivisionError), hold_run_folder(run):
        _ = 1 / 0
    assert not (run / LOCK_NAME).exists()


def test_sigterm_outside_the_training_loop_releases_the_lock(tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    if before != signal.SIG_DFL:
        pytest.skip("SIGTERM is handled by the test runner here")
    with pytest.raises(Preempted, match="SIGTERM received outside the training loop"):
        with hold_run_folder(run):
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before the next line
            pytest.fail("SIGTERM was ignored")
    assert not (run / LOCK_NAME).exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_only_rank_0_holds_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "context", lambda: DistContext(rank=1, world=2))
    with hold_run_folder(tmp_path / "run") as lock:
        assert lock is None
        assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_job_holds_all_its_folders_or_does_not_start(tmp_path):
    runs = [tmp_path / "seed0", tmp_path / "seed1"]
    seen = []

    @holds_run_folders(lambda job: job["outputs"])
    def job(*, outputs):
        seen.append([read_lock(d / LOCK_NAME).pid for d in outputs])
        return "done"

    assert job(outputs=runs) == "done"
    assert seen == [[os.getpid(), os.getpid()]]
    assert not any((d / LOCK_NAME).exists() for d in runs)

    path = _write(runs[1], _record(host="node7", pid=4242))
    other = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderBusy, match=f"run folder {runs[1]} is being written"):
            job(outputs=runs)
    finally:
        os.close(other)
    assert len(seen) == 1  # the job did not start
    assert not (runs[0] / LOCK_NAME).exists()  # the folder it had taken was released


def test_a_lock_that_cannot_be_made_is_an_error_naming_the_file(tmp_path, no_flock, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # neither flock nor hard links here
    run = tmp_path / "run"
    with pytest.raises(RunLockError, match="cannot lock the run folder") as err:
        with hold_run_folder(run):
            pytest.fail("locked without a lock")
    assert str(run / LOCK_NAME) in str(err.value)
    assert list(run.iterdir()) == []  # no lock file, no temporary file left
