"""Subprocesses with a time limit: a hang fails its test, naming what hung, instead of eating CI.

Every process a test starts (Snakemake runs, torchrun, job drivers, SLURM commands) goes through
:func:`run`, or, when the test holds it stopped mid-way, :func:`start_until_stopped`. The child
gets its own session, so on time-out the whole process group is killed: Snakemake's jobs and
torchrun's ranks too, and none is left holding the output pipes.

The limits are generous multiples of what these runs take on 2 cores (AVX2 kernels, a loaded
machine); pytest-timeout's per-test limit (``pyproject.toml``) is the last line behind them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

import pytest

# Limits in seconds (assumed: about 3-5x the slowest run of each kind measured on 2 cores).
DAG = 1200  # a whole Snakemake DAG (the tiny overlay's `all`, a SLURM run)
JOB = 420  # a Snakemake run of a few jobs, a torchrun job, a training driver
QUICK = 120  # a dry run, a report, an import check


def run(
    cmd: Sequence[str],
    *,
    what: str,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion with captured text output, or fail the test if it hangs.

    Args:
        cmd: The command.
        what: What it is, for the failure message (e.g. "Snakemake run of the tiny DAG").
        timeout: Seconds before the process group is killed and the test fails.
        cwd: Working directory.
        env: Environment (default: inherited).

    Returns:
        The finished process (exit code, stdout, stderr); a non-zero exit is the caller's to
        judge.
    """
    proc = subprocess.Popen(
        list(map(str, cmd)),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"{what} hung: still running after {timeout:.0f} s, killed "
            f"({' '.join(map(str, cmd))})\n--- its stderr, last lines ---\n{err[-3000:]}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_until_stopped(
    cmd: Sequence[str], *, what: str, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``cmd`` and wait until it stops itself (SIGSTOP); return it, stopped.

    For a process that must hold a state while a test looks at it or starts another; resume it
    with :func:`continue_stopped`. Fails the test if it ends instead, or does neither in time.
    """
    proc = subprocess.Popen(
        list(map(str, cmd)),
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return proc
        if pid or time.monotonic() > deadline:
            if not pid:
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            how = "ended without stopping" if pid else f"did not stop within {timeout:.0f} s"
            pytest.fail(f"{what} {how}\n--- its stderr, last lines ---\n{err[-3000:]}", False)
        time.sleep(0.1)


def continue_stopped(
    proc: subprocess.Popen[str], *, what: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Resume a process of :func:`start_until_stopped` (SIGCONT) and run it to completion."""
    os.kill(proc.pid, signal.SIGCONT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{what} hung after SIGCONT\n--- its stderr ---\n{err[-3000:]}", False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
