"""Provenance records name the hardware that computed a result, as well as code and software."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustkd.audit import audit
from robustkd.codesource import compare_with_commit
from robustkd.provenance import hardware, write_provenance


def test_record_names_cpu_kernels_threads_and_gpus(tmp_path):
    out = tmp_path / "model.pth"
    out.write_bytes(b"weights")
    record = write_provenance(tmp_path / "provenance.json", rule="r", outputs=[out], seed=3)
    on_disk = json.loads((tmp_path / "provenance.json").read_text())
    assert on_disk["hardware"] == record["hardware"]
    hw = on_disk["hardware"]
    assert hw["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hw["torch_threads"] == torch.get_num_threads()
    assert isinstance(hw["cpu"], str) and hw["cpu"]
    assert hw["cuda_devices"] == (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else None
    )


def test_thread_count_is_read_when_the_record_is_written():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert hardware()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_a_job_without_torch_has_no_torch_fields(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")  # as in a job that never imported torch
    hw = hardware()
    assert "torch" not in sys.modules  # and recording the hardware did not import it
    assert hw["torch_cpu_capability"] is None and hw["torch_threads"] is None
    assert hw["cuda_devices"] is None and hw["cpu"]


# --- the code a record names ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> None:
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "-C", str(repo), *ident, *args], check=True, capture_output=True)


@pytest.fixture
def package_repo(tmp_path):
    """A git repository holding a committed copy of the package and an output to record."""
    repo = tmp_path / "repo"
    shutil.copytree(
        ROOT / "src" / "robustkd",
        repo / "src" / "robustkd",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (repo / ".gitignore").write_text("__pycache__/\nout/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "package")
    (repo / "out").mkdir()
    (repo / "out" / "x.txt").write_text("result\n")
    return repo


def _record_in_subprocess(repo: Path, imports: str = "") -> dict:
    """Write out/provenance.json from a fresh process that imports the repo's package."""
    code = (
        f"{imports}from robustkd.provenance import write_provenance; "
        "write_provenance('out/provenance.json', rule='r', outputs=['out/x.txt'])"
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, check=True)
    return json.loads((repo / "out" / "provenance.json").read_text())


def test_record_names_the_imported_files_and_a_new_uncommitted_module_makes_it_dirty(
    package_repo,
):
    record = _record_in_subprocess(package_repo)
    source = record["code"]["source"]
    assert Path(source["package"]) == (package_repo / "src" / "robustkd").resolve()
    assert "provenance.py" in source["files"] and "engine/loop.py" not in source["files"]
    assert record["code"]["dirty"] is False
    assert compare_with_commit(record["code"], package_repo) == []

    # A module that git does not track (git status --untracked-files=no cannot see it).
    (package_repo / "src" / "robustkd" / "extra.py").write_text("VALUE = 1\n")
    record = _record_in_subprocess(package_repo, imports="import robustkd.extra; ")
    assert "extra.py" in record["code"]["source"]["files"]
    assert record["code"]["dirty"] is True
    assert compare_with_commit(record["code"], package_repo) == ["extra.py"]


def test_audit_fails_a_record_claiming_a_clean_commit_for_other_code(package_repo, capsys):
    _record_in_subprocess(package_repo)
    assert audit("out/provenance.json", root=package_repo).ok
    # A record as an older writer made it: the job ran an edited file, yet claims clean.
    path = package_repo / "out" / "provenance.json"
    record = json.loads(path.read_text())
    record["code"]["source"]["files"]["provenance.py"] = "0" * 64
    path.write_text(json.dumps(record))
    result = audit("out/provenance.json", root=package_repo)
    assert [p.kind for p in result.problems] == ["code"]
    assert "provenance.py" in result.problems[0].detail
    assert record["code"]["commit"][:12] in result.problems[0].detail
