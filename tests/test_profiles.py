"""The shipped profiles as users type them: quiet dry runs, and `--profile slurm` in the checkout.

`snakemake --profile slurm all`, typed in a fresh copy of the checkout, finds `slurm/config.yaml`
(Snakemake looks in the working directory first): profiles/slurm, with the site's own `slurm`
profile, where there is one, applied over it (profiles/siteprofile.py). Every rule runs a
script, so `printshellcmds` would print `Shell command: None` once per job: the profiles leave it
off.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DISTILL = "results/distill/ours/mask-0.90/seed0/student.pth"


def _siteprofile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("siteprofile", ROOT / "profiles/siteprofile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fresh_copy(dest: Path) -> Path:
    """The checkout's tracked top level as a clone has it (src linked: the package)."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "config", "workflow", "envs", "profiles", "slurm"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dest / name)
    (dest / "src").symlink_to(ROOT / "src")
    return dest


def _xdg(tmp: Path, site_profile: str | None = None) -> dict[str, str]:
    """An environment whose user and site configuration folders are ``tmp``'s (``site_profile``:
    the text of a `slurm` profile in the user's)."""
    home, dirs = tmp / "config-home", tmp / "config-dirs"
    (home / "snakemake").mkdir(parents=True)
    dirs.mkdir()
    if site_profile is not None:
        (home / "snakemake" / "slurm").mkdir()
        (home / "snakemake" / "slurm" / "config.yaml").write_text(site_profile)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    return env | {"XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": str(dirs)}


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


def _resources(dry_run: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources of its (last) job in a dry-run listing, ``tmpdir`` left out."""
    found = re.findall(r"rule (\w+):\n(?:    .*\n)*?    resources: (.*)", dry_run)
    return {
        rule: dict(kv.split("=", 1) for kv in res.split(", ") if not kv.startswith("tmpdir="))
        for rule, res in found
    }


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


def test_profile_slurm_by_name_in_a_fresh_clone(tmp_path, shipped_slurm_dry_run):
    """No profile named slurm anywhere but the checkout's: exactly the shipped one."""
    work = _fresh_copy(tmp_path / "clone")
    proc = _dry_run(work, "--profile", "slurm", "all", env=_xdg(tmp_path))
    assert "Using profile slurm for setting default command line arguments" in proc.stderr
    said = "profile slurm: profiles/slurm/config.yaml (no other 'slurm' profile found)"
    assert said in proc.stderr
    assert "Shell command" not in proc.stdout
    mine, shipped = _resources(proc.stdout), _resources(shipped_slurm_dry_run)
    assert mine["distill"]["gpu"] == "1" and mine["distill"]["cpus_per_task"] == "8"
    assert mine == shipped


def test_a_sites_own_slurm_profile_is_applied_over_the_shipped_one(tmp_path):
    """A site profile in the command-line form: its partition, account and memory default
    reach every job, its gres replaces the shipped GPU request of distill, and the shipped
    values it does not set stay."""
    site = (
        "executor: slurm\n"
        "jobs: 7\n"
        "default-resources:\n"
        "  - slurm_partition=sitegpu\n"
        "  - slurm_account=proj1\n"
        "  - mem_mb=8000\n"
        "set-resources:\n"
        "  - distill:gres='gpu:a100:1'\n"
    )
    work = _fresh_copy(tmp_path / "clone")
    env = _xdg(tmp_path, site)
    proc = _dry_run(work, "--profile", "slurm", DISTILL, env=env)
    site_file = tmp_path / "config-home" / "snakemake" / "slurm" / "config.yaml"
    assert f"profile slurm: profiles/slurm/config.yaml, with {site_file} over it" in proc.stderr
    res = _resources(proc.stdout)
    site_wide = {"slurm_partition": "sitegpu", "slurm_account": "proj1"}
    # distill: the shipped set-resources, the site's gres instead of gpu, the site's partition.
    assert res["distill"].items() >= {"gres": "gpu:a100:1", "mem_mb": "32000"}.items()
    assert res["distill"].items() >= {"cpus_per_task": "8", **site_wide}.items()
    assert "gpu" not in res["distill"]
    # fetch_weights (no resources of its own but disk): the site's memory, the shipped runtime.
    expected = {"mem_mb": "8000", "runtime": "60", "cpus_per_task": "1", **site_wide}
    assert res["fetch_weights"].items() >= expected.items()


def test_merge_rules():
    merge = _siteprofile().merge_profiles
    ours = {
        "jobs": 50,
        "default-resources": {"mem_mb": 4000, "runtime": 60},
        "set-resources": {"distill": {"gpu": 1, "mem_mb": 32000}, "finetune": {"gpu": 1}},
        "set-threads": {"distill": 8},
    }
    site = {
        "jobs": 7,
        "default-resources": {"slurm_account": "p"},
        "set-resources": {"distill": {"gres": "gpu:a100:2"}, "transfer": {"mem_mb": 1}},
        "slurm-status-command": "squeue",
    }
    assert merge(ours, site) == {
        "jobs": 7,
        "default-resources": {"mem_mb": 4000, "runtime": 60, "slurm_account": "p"},
        "set-resources": {
            "distill": {"mem_mb": 32000, "gres": "gpu:a100:2"},
            "finetune": {"gpu": 1},
            "transfer": {"mem_mb": 1},
        },
        "set-threads": {"distill": 8},
        "slurm-status-command": "squeue",
    }
    assert ours["set-resources"]["distill"] == {"gpu": 1, "mem_mb": 32000}  # unchanged


def test_a_profile_in_command_line_form_reads_as_mappings(tmp_path):
    read = _siteprofile().read_profile
    (tmp_path / "status.sh").write_text("")
    profile = tmp_path / "config.yaml"
    profile.write_text(
        "default-resources: [mem_mb=8000, 'slurm_partition=gpu', runtime=1.5]\n"
        "set-resources: ['distill:gpu=2']\n"
        "set-threads: [distill=16]\n"
        "cluster-status: status.sh\n"
        "executor: slurm\n"
    )
    assert read(profile) == {
        "default-resources": {"mem_mb": 8000, "slurm_partition": "gpu", "runtime": 1.5},
        "set-resources": {"distill": {"gpu": 2}},
        "set-threads": {"distill": 16},
        "cluster-status": str(tmp_path / "status.sh"),
        "executor": "slurm",
    }


def test_a_site_profile_that_is_the_shipped_one_counts_as_none(tmp_path, monkeypatch):
    """A user who linked profiles/slurm into ~/.config/snakemake/slurm (the old instructions)."""
    site = _siteprofile()
    home = tmp_path / "config-home"
    (home / "snakemake").mkdir(parents=True)
    (home / "snakemake" / "slurm").symlink_to(ROOT / "profiles" / "slurm")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "none"))
    skip = [(ROOT / "slurm").resolve(), (ROOT / "profiles" / "slurm").resolve()]
    assert site.site_profile("slurm", skip) is None
    assert site.site_profile("slurm", []) == home / "snakemake" / "slurm" / "config.yaml"
