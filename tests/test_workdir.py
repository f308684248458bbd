"""Running from another directory: `snakemake -s <checkout>/Snakefile -d <workdir>`.

The workflow's own files (base config, schema, class list, scripts, the package) come from the
checkout; results, logs and Snakemake's state go to the working directory, nothing into the
checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _checkout_state() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--ignored", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


@pytest.mark.e2e
def test_run_with_snakefile_elsewhere_writes_only_into_the_workdir(tmp_path):
    caller, workdir = tmp_path / "elsewhere", tmp_path / "scratch" / "run"
    caller.mkdir()
    before = _checkout_state()
    target = "results/data/imagenet100"
    proc = subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(workdir),
            target,
            "--cores",
            "1",
            "--configfile",
            str(ROOT / "config" / "demo.yaml"),
            str(ROOT / "config" / "tiny.yaml"),
        ],
        cwd=caller,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    prepared = workdir / target
    assert (prepared / "manifest.csv").is_file()
    assert (workdir / "logs" / "prepare" / "imagenet100.log").is_file()
    assert not list(caller.iterdir())
    # The class list is the checkout's, recorded with its sha256 (the CMC list).
    record = json.loads((prepared / "provenance.json").read_text())["class_list"]
    assert record["path"] == str(ROOT / "config" / "imagenet100.txt")
    assert record["cmc"] is True and record["sha256"].startswith("79f3f155")
    assert _checkout_state() == before


def test_a_class_list_in_neither_place_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  datasets:\n    imagenet100: {class_list: lists/mine.txt}\n")
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "run"), "all", "-n"]
        + ["--configfile", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'data.datasets.imagenet100.class_list': 'lists/mine.txt'" in said
    assert f"{tmp_path / 'run' / 'lists' / 'mine.txt'}" in said
    assert f"{ROOT / 'lists' / 'mine.txt'}" in said


def test_own_file_in_the_workdir_is_kept(tmp_path):
    from robustkd.config import resolve_workflow_files

    key = "data.datasets.imagenet100.class_list"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "imagenet100.txt").write_text("n01749939\n")
    config = {"data": {"datasets": {"imagenet100": {"class_list": "config/imagenet100.txt"}}}}
    assert resolve_workflow_files(config, ROOT, tmp_path) == {}
    assert config["data"]["datasets"]["imagenet100"]["class_list"] == "config/imagenet100.txt"
    shipped = str(ROOT / "config" / "imagenet100.txt")
    assert resolve_workflow_files(config, ROOT, tmp_path / "elsewhere") == {key: shipped}
    assert config["data"]["datasets"]["imagenet100"]["class_list"] == shipped


@pytest.mark.e2e
def test_audit_follows_raw_data_written_in_another_working_directory(tmp_path):
    """One run writes the miniature's raw data, a second one (another `-d`) prepares it from
    there: the audit of the second resolves the first run's record against the first run's
    directory (it names it), not its own root, and still catches a changed raw file."""
    from robustkd.audit import audit
    from tests import bounded

    first, second = tmp_path / "first", tmp_path / "second"
    raw = first / "results" / "raw_demo" / "imagenet100"
    overlay = tmp_path / "elsewhere.yaml"
    overlay.write_text(
        f"demo_raw: {{enabled: false}}\ndata: {{datasets: {{imagenet100: {{root: {raw}}}}}}}\n"
    )
    tiny = [ROOT / "config" / "demo.yaml", ROOT / "config" / "tiny.yaml"]
    for workdir, target, configs in (
        (first, "results/raw_demo/imagenet100", tiny),
        (second, "results/data/imagenet100", [*tiny, overlay]),
    ):
        cmd = [*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", workdir, target, "--cores", "1"]
        proc = bounded.run(
            [*cmd, "--configfile", *configs],
            what=f"{target} in {workdir.name}",
            timeout=bounded.JOB,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((raw / "provenance.json").read_text())
    assert record["workdir"] == str(first)
    assert not Path(next(iter(record["outputs"]))).is_absolute()

    lines: list[str] = []
    result = audit("results/data/imagenet100", root=second, echo=lines.append)
    assert result.ok, result.summary
    chain = "\n".join(lines)
    assert f"<- demo_raw  {raw / 'provenance.json'}" in chain
    assert result.links == 2 and result.files > len(record["outputs"])

    victim = sorted(raw.rglob("*.JPEG"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    result = audit("results/data/imagenet100", root=second, echo=lambda _: None)
    assert [(p.kind, p.path) for p in result.problems] == [("changed", str(victim))]
