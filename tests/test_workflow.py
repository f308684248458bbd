"""End to end: the real Snakemake DAG on the tiny overlay, in a scratch copy of the workflow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robustkd.data import PreparedDataset

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIGS = ["--configfile", "config/demo.yaml", "tests/data/tiny.yaml"]

# Expected prepared split sizes for tests/data/tiny.yaml.
EXPECTED = {
    "imagenet100": ({"train": 4 * 6, "val": 4 * 3}, 4),
    "cifar10": ({"train": 10 * 5, "test": 10 * 2}, 10),
    "cifar100": ({"train": 100, "test": 100}, 100),
    "stl10": ({"train": 10 * 2, "test": 10}, 10),
    "resisc45": ({"train": 45 * 3, "val": 45, "test": 45}, 45),
    "camelyon17": (None, 2),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "config", "workflow", "envs", "tests"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "src").symlink_to(ROOT / "src")
    return work


def run(workdir, *args):
    cmd = [*SNAKEMAKE, *args, "--cores", "2", *CONFIGS]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)


@pytest.mark.e2e
def test_demo_dag_end_to_end(workdir):
    proc = run(workdir, "all")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for dataset, (splits, n_classes) in EXPECTED.items():
        ds = PreparedDataset(workdir / "results" / "data" / dataset)
        assert len(ds.classes) == n_classes, dataset
        if splits is not None:
            assert {s: len(ds.indices(s)) for s in ds.splits} == splits, dataset
        prov = json.loads((workdir / "results" / "data" / dataset / "provenance.json").read_text())
        assert prov["rule"] == f"prepare_{dataset}"
        assert prov["outputs"], dataset
        assert all(k.startswith(f"results/data/{dataset}/") for k in prov["outputs"]), dataset
    camelyon = PreparedDataset(workdir / "results" / "data" / "camelyon17")
    assert set(camelyon.splits) == {"train", "id_val", "val", "test"}

    # A second run has nothing to do.
    again = run(workdir, "all", "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.e2e
def test_invalid_config_stops_before_any_job(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distortions:\n  mask-0.75: {family: mask, p: 2}\n")
    proc = subprocess.run(
        [*SNAKEMAKE, "all", "--dry-run", "--configfile", "config/demo.yaml", str(bad)],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "distortions.mask-0.75.p" in proc.stdout + proc.stderr
