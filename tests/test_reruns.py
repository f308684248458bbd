"""What reruns a job (robustkd.triggers): content and science, never a checkout's location or an
operational setting.

One run builds a student (demo_raw, the two preparations, the teachers of seeds 0 and 1, distill:
6 jobs) with a
first clone of the workflow into a shared working directory (``-d``), as a user keeps results
on scratch; dry runs then ask Snakemake (default rerun triggers) what it would rerun: from a
second clone of the same commit (nothing), after a shipped file's content changed (what reads
it), after operational settings changed (nothing) and after scientific ones (the jobs using
them).
"""

from __future__ import annotations

import copy
import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from robustkd.codesource import source_digest
from robustkd.plan import parse_dry_run
from robustkd.triggers import WorkflowFile, library_digest, scientific, with_operational
from tests import bounded
from tests.conftest import copy_workflow

STUDENT = "results/distill/ours/mask-0.90/seed0/student.pth"
BUILT = {"demo_raw", "prepare_imagenet100", "prepare_pretrain_corpus", "pretrain_backbone"}
# Operational settings of both kinds of training section, as the first run had them.
OPERATIONAL = {
    "training": {"distill": {"checkpoint_every": 2, "log_every": 4}},
    "backbones": {"vit": {"pretrain": {"checkpoint_every": 3, "log_every": 2}}},
}


def _overlay(folder: Path, name: str, values: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _snakemake(clone: Path, workdir: Path, overlay: Path, *args: str, what: str, timeout: float):
    """Snakemake of ``clone`` in ``workdir``, the clone's demo and tiny configs + ``overlay``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", clone / "Snakefile", "-d", workdir, STUDENT]
    cmd += [*args, "--configfile", clone / "config/demo.yaml", clone / "config/tiny.yaml"]
    workdir.mkdir(parents=True, exist_ok=True)
    proc = bounded.run([*cmd, overlay], what=what, timeout=timeout, cwd=workdir.parent)
    assert proc.returncode == 0, f"{what} failed:\n{proc.stderr[-4000:]}"
    return proc


def _would_run(clone: Path, workdir: Path, overlay: Path) -> Counter[str]:
    """Jobs a dry run (default rerun triggers) schedules, by rule."""
    proc = _snakemake(
        clone, workdir, overlay, "--dry-run", what="Snakemake dry run", timeout=bounded.QUICK
    )
    return Counter(rule for rule, _ in parse_dry_run(proc.stdout + proc.stderr))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two clones of the workflow and a working directory where the first built a student."""
    base = tmp_path_factory.mktemp("reruns")
    clones = {}
    for name in ("first", "second"):
        (base / name).mkdir()
        clones[name] = copy_workflow(base / name)
    workdir = base / "scratch" / "run"
    overlay = _overlay(base, "operational", OPERATIONAL)
    _snakemake(
        clones["first"], workdir, overlay, "--cores", "2", what="the first run", timeout=bounded.JOB
    )
    return {**clones, "workdir": workdir, "overlay": overlay, "base": base}


@pytest.mark.e2e
def test_another_clone_of_the_same_commit_reruns_nothing(built):
    """A re-clone, a moved checkout or a second clone finds the results up to date, and the
    records still name the class list the jobs read, with its sha256."""
    assert _would_run(built["first"], built["workdir"], built["overlay"]) == Counter()
    assert _would_run(built["second"], built["workdir"], built["overlay"]) == Counter()
    shipped = built["first"] / "config" / "imagenet100.txt"
    record = json.loads((built["workdir"] / "results/data/imagenet100/provenance.json").read_text())
    assert record["class_list"]["path"] == str(shipped)
    assert record["class_list"]["sha256"].startswith("79f3f155")
    assert record["inputs"][str(shipped)] == record["class_list"]["sha256"]


@pytest.mark.e2e
def test_a_changed_shipped_file_reruns_what_reads_it(built):
    """The class list's content, not its path, decides: reordered, every job that reads it
    (and everything downstream) reruns, from the clone that built the results too."""
    shipped = built["first"] / "config" / "imagenet100.txt"
    original = shipped.read_text()
    lines = original.splitlines(keepends=True)
    try:
        shipped.write_text("".join([lines[1], lines[0], *lines[2:]]))
        jobs = _would_run(built["first"], built["workdir"], built["overlay"])
    finally:
        shipped.write_text(original)
    assert set(jobs) == BUILT | {"distill"}, jobs


@pytest.mark.e2e
def test_operational_settings_rerun_nothing_and_are_recorded(built):
    """checkpoint_every and log_every changed in both training sections: nothing to do. The
    records name the values the jobs ran with."""
    changed = copy.deepcopy(OPERATIONAL)
    changed["training"]["distill"] = {"checkpoint_every": 3, "log_every": 7}
    changed["backbones"]["vit"]["pretrain"] = {"checkpoint_every": 0, "log_every": 9}
    overlay = _overlay(built["base"], "operational_changed", changed)
    assert _would_run(built["first"], built["workdir"], overlay) == Counter()
    results = built["workdir"] / "results"
    student = json.loads((results / "distill/ours/mask-0.90/seed0/provenance.json").read_text())
    assert student["config"]["train"]["checkpoint_every"] == 2
    assert student["config"]["train"]["log_every"] == 4
    teacher = json.loads((results / "teachers/vit/seed0/provenance.json").read_text())
    assert teacher["config"]["pretrain"]["checkpoint_every"] == 3
    assert teacher["config"]["pretrain"]["log_every"] == 2


@pytest.mark.e2e
def test_scientific_settings_still_rerun(built):
    """A distillation setting reruns the distillation; a teacher's, the teachers (one per seed
    of the distillation job: the tiny overlay's 2) and what learnt from them."""
    lr = copy.deepcopy(OPERATIONAL)
    lr["training"]["distill"]["lr"] = 2.0e-3
    overlay = _overlay(built["base"], "lr", lr)
    assert _would_run(built["first"], built["workdir"], overlay) == Counter({"distill": 1})
    epochs = copy.deepcopy(OPERATIONAL)
    epochs["backbones"]["vit"]["pretrain"]["epochs"] = 3
    overlay = _overlay(built["base"], "epochs", epochs)
    jobs = _would_run(built["second"], built["workdir"], overlay)
    assert jobs == Counter({"pretrain_backbone": 2, "distill": 1})


def test_library_digest_is_the_content_of_the_python_files(tmp_path):
    """Same files anywhere: same digest; an edit changes it; caches and other files do not."""
    import hashlib

    def package(where: Path, body: str) -> Path:
        (where / "pkg" / "sub").mkdir(parents=True)
        (where / "pkg" / "__init__.py").write_text("")
        (where / "pkg" / "sub" / "rule.py").write_text(body)
        return where / "pkg"

    a = package(tmp_path / "a", "ALPHA = 0.05\n")
    b = package(tmp_path / "b", "ALPHA = 0.05\n")
    sha = {
        name: hashlib.sha256(body).hexdigest()
        for name, body in (("i", b""), ("r", b"ALPHA = 0.05\n"))
    }
    expected = source_digest({"__init__.py": sha["i"], "sub/rule.py": sha["r"]})
    assert library_digest(a) == library_digest(b) == expected
    (b / "__pycache__").mkdir()
    (b / "__pycache__" / "x.py").write_text("cached")
    (b / "notes.txt").write_text("not Python")
    assert library_digest(b) == expected
    (b / "sub" / "rule.py").write_text("ALPHA = 0.01\n")
    assert library_digest(b) != expected
    with pytest.raises(FileNotFoundError, match="no Python source"):
        library_digest(tmp_path / "empty")


def test_workflow_file_compares_by_content_and_pickles_as_its_path(tmp_path):
    a, b = tmp_path / "a" / "list.txt", tmp_path / "b" / "list.txt"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("n01749939\n")
    fa, fb = WorkflowFile(a, "config/list.txt"), WorkflowFile(b, "config/list.txt")
    assert fa == str(a) and fb == str(b)  # the job opens its own checkout's file
    assert repr({"class_list": fa}) == repr({"class_list": fb})  # Snakemake compares these
    assert "config/list.txt" in repr(fa) and fa.sha256 in repr(fa) and str(a) not in repr(fa)
    b.write_text("n02869837\n")
    assert repr(WorkflowFile(b, "config/list.txt")) != repr(fa)
    back = pickle.loads(pickle.dumps({"spec": [fa]}))
    assert back == {"spec": [str(a)]} and type(back["spec"][0]) is str
    assert copy.deepcopy({"x": fa})["x"] is fa


def test_operational_keys_leave_params_and_come_back_from_the_config():
    config = {
        "training": {"distill": {"epochs": 2, "lr": 1e-3, "checkpoint_every": 5, "log_every": 1}},
        "backbones": {"vit": {"timm_name": "t", "pretrain": {"epochs": 1, "log_every": 3}}},
    }
    params = scientific(config["training"]["distill"])
    assert params == {"epochs": 2, "lr": 1e-3}
    assert with_operational(params, config, "training.distill") == config["training"]["distill"]
    spec = scientific(config["backbones"]["vit"])
    assert spec == {"timm_name": "t", "pretrain": {"epochs": 1}}
    assert with_operational(spec, config, "backbones.vit") == config["backbones"]["vit"]
    # The params decide the science; only the operational keys come from the config.
    assert with_operational({"epochs": 9}, config, "training.distill") == {
        "epochs": 9,
        "checkpoint_every": 5,
        "log_every": 1,
    }
    assert with_operational(params, config, "training.missing") == params
