"""Jobs run the checkout's own robustkd, or stop; provenance names the source that ran.

Each test runs Snakemake on a scratch checkout while *another* copy of robustkd is importable
(first on PYTHONPATH, as an installed copy would be), the situation of a workstation or cluster
where robustkd was once pip-installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGET = "results/raw_demo/cifar100"  # the cheapest job of the DAG (no torch, a few images)
LOG = "logs/demo_raw/cifar100.log"


def _copy_package(dest: Path) -> Path:
    shutil.copytree(ROOT / "src" / "robustkd", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of the workflow with its own copy of the package (edited: see below)."""
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("Snakefile", "config", "workflow", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    pkg = _copy_package(work / "src" / "robustkd")
    # An uncommitted edit in the checkout: the job must run (and record) this file.
    with open(pkg / "data" / "demo_raw.py", "a") as fh:
        fh.write("# edited in the checkout\n")
    return work


@pytest.fixture
def other(tmp_path: Path) -> Path:
    """Another copy of robustkd, importable first; importing it leaves a marker file."""
    site = tmp_path / "site"
    pkg = _copy_package(site / "robustkd")
    with open(pkg / "__init__.py", "a") as fh:
        fh.write(
            "\nimport os as _os\n"
            "with open(_os.environ['MARKER'], 'a') as _fh:\n"
            "    _fh.write(__file__ + '\\n')\n"
        )
    return site


def _snakemake(work: Path, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", TARGET, "--cores", "1"]
    cmd += ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
    full_env = {k: v for k, v in os.environ.items() if k != "ROBUSTKD_USE_INSTALLED"}
    full_env.update(PYTHONPATH=str(site), MARKER=str(work / "marker"), **env)
    return subprocess.run(cmd, cwd=work, env=full_env, capture_output=True, text=True, check=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_record_names(record: dict, package: Path) -> None:
    source = record["code"]["source"]
    assert Path(source["package"]) == package.resolve()
    files = source["files"]
    assert {"__init__.py", "provenance.py", "data/demo_raw.py"} <= set(files)
    for rel, sha in files.items():
        assert sha == _sha(package / rel), rel
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    assert source["sha256"] == digest.hexdigest()


@pytest.mark.e2e
def test_a_job_runs_the_checkouts_package_not_an_installed_copy(checkout, other):
    proc = _snakemake(checkout, other)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (checkout / "marker").exists(), (
        "the job imported the other copy: " + (checkout / "marker").read_text()
    )
    record = json.loads((checkout / TARGET / "provenance.json").read_text())
    _assert_record_names(record, checkout / "src" / "robustkd")
    assert record["code"]["source"]["installed_on_purpose"] is False
    assert record["code"]["commit"] is None  # the scratch checkout is not a git repository


@pytest.mark.e2e
def test_a_checkout_without_its_package_stops_unless_installed_is_asked_for(checkout, other):
    shutil.rmtree(checkout / "src")
    proc = _snakemake(checkout, other)
    assert proc.returncode != 0
    assert f"would run the robustkd package at {other / 'robustkd'}" in proc.stderr
    assert str(checkout / "src" / "robustkd") in proc.stderr
    assert "ROBUSTKD_USE_INSTALLED=1" in proc.stderr
    assert not (checkout / TARGET).exists()

    proc = _snakemake(checkout, other, ROBUSTKD_USE_INSTALLED="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((checkout / TARGET / "provenance.json").read_text())
    _assert_record_names(record, other / "robustkd")
    assert record["code"]["source"]["installed_on_purpose"] is True


def test_a_job_whose_process_already_imported_another_copy_stops(checkout, other, tmp_path):
    # Another copy imported at start-up (a .pth or sitecustomize), before the job's own code.
    (other / "sitecustomize.py").write_text("import robustkd\n")
    log = tmp_path / "job.log"
    script = textwrap.dedent(
        f"""
        import sys, types
        sys.path.append({str(checkout / "workflow" / "scripts")!r})  # as Snakemake does
        from robustkd_checkout import use_checkout_package
        use_checkout_package(types.SimpleNamespace(log=[{str(log)!r}]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(other), "MARKER": str(tmp_path / "marker")}
    env.pop("ROBUSTKD_USE_INSTALLED", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "CheckoutPackageError" in proc.stderr
    message = f"would run the robustkd package at {other / 'robustkd'}, not the checkout's"
    assert message in proc.stderr
    logged = log.read_text()  # the job's log holds the error and its traceback too
    assert logged.startswith("Traceback (most recent call last):")
    last = logged.rstrip("\n").splitlines()[-1]
    assert last.startswith("robustkd_checkout.CheckoutPackageError: ") and message in last


@pytest.mark.e2e
def test_a_failing_jobs_log_ends_with_the_error_and_its_traceback(checkout, other):
    for package in (checkout / "src" / "robustkd", other / "robustkd"):  # whichever runs
        with open(package / "data" / "demo_raw.py", "a") as fh:
            fh.write(
                "\n\ndef write_demo_raw(*args, **kwargs):\n"
                "    raise RuntimeError('injected fault in write_demo_raw')\n"
            )
    proc = _snakemake(checkout, other)
    assert proc.returncode != 0
    text = (checkout / LOG).read_text()
    assert text.rstrip("\n").endswith("\nRuntimeError: injected fault in write_demo_raw"), text
    assert "Traceback (most recent call last):" in text
    assert 'demo_raw.py", line' in text  # the frame that raised
    assert "CRITICAL" in text


def test_every_workflow_script_takes_the_checkouts_package_before_importing_it():
    """Each Snakemake script calls use_checkout_package before its first robustkd import.

    Snakemake may have imported an installed robustkd into the job's process before the script
    runs (unpickling its params), so a script that only puts ``src/`` on ``sys.path`` runs the
    installed copy, or fails on a module only the checkout has (the claims and distill_curves
    scripts did, on a machine with an older installed copy).
    """
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    scripts = [p for p in scripts if p.name != "robustkd_checkout.py"]
    assert len(scripts) > 10
    unguarded = []
    for path in scripts:
        lines = path.read_text(encoding="utf-8").splitlines()
        first_import = next(
            (i for i, line in enumerate(lines) if re.match(r"(from|import) robustkd\b(?!_)", line)),
            None,
        )
        guard = next(
            (
                i
                for i, line in enumerate(lines)
                if line.startswith("use_checkout_package(snakemake)")
            ),
            None,
        )
        if guard is None or (first_import is not None and first_import < guard):
            unguarded.append(path.name)
    assert not unguarded, f"workflow scripts without use_checkout_package first: {unguarded}"
