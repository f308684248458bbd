"""The shipped profiles' dry runs: no `Shell command: None` noise.

Every rule runs a script, so `printshellcmds` would print `Shell command: None` once per job: the
profiles leave it off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _dry_run(cwd: Path, *args: str, env: dict[str, str] | None = None):
    proc = bounded.run(
        [*SNAKEMAKE, *args, "--dry-run"],
        what=f"snakemake {' '.join(args)} --dry-run",
        timeout=bounded.QUICK,
        cwd=cwd,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def shipped_slurm_dry_run(tmp_path_factory) -> str:
    """`snakemake all --dry-run --profile profiles/slurm` of the checkout (paper config)."""
    cwd = tmp_path_factory.mktemp("shipped")
    args = ["-s", str(ROOT / "Snakefile"), "all", "--profile", str(ROOT / "profiles" / "slurm")]
    return _dry_run(cwd, *args).stdout


def test_the_slurm_profiles_dry_run_prints_no_shell_command(shipped_slurm_dry_run):
    assert "rule distill:" in shipped_slurm_dry_run
    assert "Shell command" not in shipped_slurm_dry_run


def test_the_local_profiles_dry_run_prints_no_shell_command(tmp_path):
    args = ["-s", str(ROOT / "Snakefile"), "all", "--profile", str(ROOT / "profiles" / "local")]
    proc = _dry_run(tmp_path, *args)
    assert "rule distill:" in proc.stdout
    assert "Shell command" not in proc.stdout + proc.stderr
