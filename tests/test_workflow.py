"""End to end: the real Snakemake DAG on the tiny overlay, in a scratch copy of the workflow."""

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustkd.data import PreparedDataset
from robustkd.engine.devices import DEVICE_ENV
from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIGS = ["--configfile", "config/demo.yaml", "config/tiny.yaml"]

# Expected prepared split sizes for config/tiny.yaml.
EXPECTED = {
    "imagenet100": ({"train": 4 * 6, "val": 4 * 3}, 4),
    "cifar10": ({"train": 10 * 5, "test": 10 * 2}, 10),
    "cifar100": ({"train": 100, "test": 100}, 100),
    "stl10": ({"train": 10 * 2, "test": 10}, 10),
    "resisc45": ({"train": 45 * 3, "val": 45, "test": 45}, 45),
    "camelyon17": (None, 2),
}


@pytest.fixture(scope="module")
def workdir(tiny_run):
    """The tiny DAG run of the session (tests/conftest.py::tiny_run)."""
    return tiny_run


def run(workdir, *args, env=None):
    cmd = [*SNAKEMAKE, *args, "--cores", "2", *CONFIGS]
    what = f"snakemake {' '.join(args)}"
    return bounded.run(cmd, what=what, timeout=bounded.JOB, cwd=workdir, env=env)


def _failure(proc, logs):
    """What a failed run said: torchrun's error lines, Snakemake's end and each job log's end."""
    keys = ("error", "traceback", "exitcode", "signal", "closed")
    errors = [ln for ln in proc.stderr.splitlines() if any(k in ln.lower() for k in keys)]
    parts = ["\n".join(errors)[-4000:], proc.stderr[-2000:]]
    for path in logs:
        text = path.read_text() if path.exists() else "(missing)"
        parts.append(f"--- {path.name}:\n{text[-3000:]}")
    return "\n".join(parts)


@pytest.mark.e2e
def test_demo_dag_end_to_end(workdir):
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

    # The training stages: a teacher, students, classifiers with metrics, and the two tables.
    teacher = json.loads((workdir / "results/teachers/vit/seed0/metrics.json").read_text())
    # Pretrained on the corpus of other classes (3 in the tiny overlay), not on the 4 targets.
    assert 0 <= teacher["top1"] <= 100 and teacher["chance"] == pytest.approx(100 / 3)
    for seed in (0, 1):
        metrics = workdir / f"results/finetune/imagenet100/ours/mask-0.90/frac1/seed{seed}"
        m = json.loads((metrics / "metrics.json").read_text())
        assert m["repeats"] == 2 and m["n"] == 4 * 3 and m["seed"] == seed
        prov = json.loads((metrics / "provenance.json").read_text())
        assert any(
            k.endswith(f"results/distill/ours/mask-0.90/seed{seed}/student.pth")
            for k in prov["inputs"]
        )
    t1 = (workdir / "results/tables/table1.md").read_text()
    assert "Random Mask p=0.9" in t1 and "over n = 2 seeds" in t1
    assert "Gaussian Blur (9, 1.3) [for Gaussian Blur (37, 9.0)]" in t1
    t3 = pd.read_csv(workdir / "results/tables/table3.csv")
    assert sorted(t3["row"]) == ["global", "global-attention", "global-local", "ours"]
    assert (t3["n"] == 2).all()

    # Table 2: every method x dataset cell, each test split scored in full.
    t2 = pd.read_csv(workdir / "results/tables/table2.csv")
    assert len(t2) == 3 * 5 and (t2["n"] == 2).all()
    for dataset, (_, n_classes) in EXPECTED.items():
        if dataset == "imagenet100":
            continue
        m = json.loads(
            (
                workdir / f"results/finetune/{dataset}/ci/mask-0.90/frac1/seed0/metrics.json"
            ).read_text()
        )
        test_size = len(PreparedDataset(workdir / "results" / "data" / dataset).indices("test"))
        assert (m["split"], m["n"], m["chance"]) == ("test", test_size, 100 / n_classes)
    # Figures: PNG, PDF and the data behind each.
    for fig in ("fig2", "fig3", "fig4"):
        for ext in ("png", "pdf", "csv"):
            assert (workdir / f"results/figures/{fig}.{ext}").stat().st_size > 0
        # Each figure's provenance hashes the figure and every metrics file it was drawn from.
        prov = json.loads((workdir / f"results/figures/{fig}.provenance.json").read_text())
        assert set(prov["outputs"]) == {f"results/figures/{fig}.{e}" for e in ("png", "pdf", "csv")}
        assert prov["inputs"] and all(len(h) == 64 for h in prov["inputs"].values()), fig
    craft = json.loads((workdir / "results/craft/figures/provenance.json").read_text())
    assert "results/craft/figures/alignment_heatmap.png" in craft["outputs"]
    assert "results/craft/students/craft/seed1/metrics.json" in craft["inputs"]
    fig3 = pd.read_csv(workdir / "results/figures/fig3.csv")
    assert set(fig3["fraction"]) == {0.5, 1.0}
    # experiments.fig3.min_steps 3 (config/tiny.yaml): the 50 % run (12 images, batch 8, one
    # step an epoch) makes 3 epochs where training.finetune has 1; the 100 % run keeps its 1.
    for frac, epochs in (("frac0.5", 3), ("frac1", 1)):
        run_dir = workdir / f"results/finetune/imagenet100/ours/mask-0.90/{frac}/seed0"
        record = json.loads((run_dir / "provenance.json").read_text())
        assert (record["config"]["train"]["epochs"], record["train"]["epochs"]) == (epochs, epochs)

    # A second run has nothing to do.
    again = run(workdir, "all", "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


# The rules that only read results: a change to the library reruns them (robustkd.triggers).
REPORT_RULES = {
    "make_table",
    "make_figure",
    "make_fig4",
    "provenance_page",
    "claims",
    "distill_curves",
    "craft_report",
}
TARGETS = {"all", "table1", "table2", "table3", "table4", "fig2", "fig3", "fig4", "craft"}


@pytest.mark.e2e
def test_a_library_change_reruns_the_tables_and_claims_not_the_trainings(workdir):
    """Edit the decision rule's module in a copy of the package: a dry run of `all` schedules
    the tables, figures, claims and pages again (Snakemake's code trigger alone sees only the
    scripts), and no training or evaluation job."""
    from robustkd.plan import parse_dry_run

    link = workdir / "src"
    copy = workdir / "src-edited"
    shutil.copytree(link.resolve(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    module = copy / "robustkd" / "report" / "verdicts.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    link.rename(workdir / "src-link")
    try:
        copy.rename(link)
        proc = run(workdir, "all", "--dry-run")
    finally:
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        (workdir / "src-link").rename(link)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = {rule for rule, _ in parse_dry_run(proc.stdout + proc.stderr)}
    assert {"claims", "make_table", "make_figure", "craft_report"} <= rules, rules
    # Besides the report rules only the targets that collect them: no training, no evaluation.
    assert rules <= REPORT_RULES | TARGETS, rules - REPORT_RULES - TARGETS
    restored = run(workdir, "all", "--dry-run")
    assert "Nothing to be done" in restored.stdout + restored.stderr


@pytest.mark.e2e
def test_invalid_config_stops_before_any_job(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distortions:\n  mask-0.75: {family: mask, p: 2}\n")
    proc = bounded.run(
        [*SNAKEMAKE, "all", "--dry-run", "--configfile", "config/demo.yaml", str(bad)],
        what="Snakemake dry run with a bad config",
        timeout=bounded.QUICK,
        cwd=workdir,
    )
    assert proc.returncode != 0
    assert "distortions.mask-0.75.p" in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_sigkilled_distillation_resumes_to_identical_students(workdir):
    """Kill a distill job with SIGKILL mid-epoch, rerun the target: same students, bit for bit.

    Runs after test_demo_dag_end_to_end (same scratch workflow): its students are the
    uninterrupted reference. Tiny overlay: 24 images, batch 8, 2 epochs = 6 steps,
    checkpoints at steps 2, 3 (epoch end), 4 and 6; the kill comes after step 5.
    """
    from robustkd.engine.faults import KILL_ENV

    run_dir = workdir / "results" / "distill" / "global" / "noise-0.5"
    students = [run_dir / f"seed{s}" / "student.pth" for s in (0, 1)]
    reference = [torch.load(p) for p in students]
    shutil.rmtree(run_dir)
    target = str(students[1].relative_to(workdir))

    env = {**os.environ, KILL_ENV: "5"}
    killed = bounded.run(
        [*SNAKEMAKE, target, "--cores", "1", *CONFIGS],
        what="Snakemake run of a distillation killed at step 5",
        timeout=bounded.JOB,
        cwd=workdir,
        env=env,
    )
    assert killed.returncode != 0
    assert not students[0].exists()
    ckpt = torch.load(run_dir / "seed0" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4

    env.pop(KILL_ENV)
    rerun = bounded.run(
        [*SNAKEMAKE, target, "--cores", "1", *CONFIGS],
        what="Snakemake rerun of the killed distillation",
        timeout=bounded.JOB,
        cwd=workdir,
        env=env,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (workdir / "logs" / "distill" / "global" / "noise-0.5.log").read_text()
    assert "resumed from" in log and "at step 4/6" in log
    for path, ref in zip(students, reference, strict=True):
        got = torch.load(path)
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref), path


@pytest.mark.e2e
def test_jobs_given_two_gpus_run_under_torchrun(workdir, tmp_path):
    """`gpu=2` on a training rule: the job runs as 2 torchrun processes (gloo on this CPU).

    The multi-level student must equal the 1-process run of the session within float32
    rounding (see tests/test_distributed.py for the tolerance); a CRAFT student (CRD: BatchNorm,
    memory bank) must train and be written once by rank 0. The original outputs are put back.
    """
    from tests.test_distributed import ATOL_WEIGHTS, _without_key_bias

    runs = {
        "distill": workdir / "results" / "distill" / "ours" / "mask-0.90",
        "craft": workdir / "results" / "craft" / "students" / "crd",
    }
    saved = {k: tmp_path / k for k in runs}
    for key, run_dir in runs.items():
        shutil.move(run_dir, saved[key])
    try:
        targets = [
            str((runs["distill"] / "seed1" / "student.pth").relative_to(workdir)),
            str((runs["craft"] / "seed1" / "student.pth").relative_to(workdir)),
        ]
        # The jobs ask for GPUs; their CPU references need gloo on the CPU, said explicitly.
        cpu = {**os.environ, DEVICE_ENV: "cpu"}
        gpus = ("--set-resources", "distill:gpu=2", "craft_student:gpu=2")
        proc = run(workdir, *targets, *gpus, env=cpu)
        logs = [workdir / f"logs/{p}.log" for p in ("distill/ours/mask-0.90", "craft/students/crd")]
        assert proc.returncode == 0, _failure(proc, logs)
        log = logs[0].read_text()
        assert "launching distill job on 2 processes" in log
        assert "[rank 0/2]" in log and "[rank 1/2]" in log
        for seed in (0, 1):
            ref = _without_key_bias(torch.load(saved["distill"] / f"seed{seed}" / "student.pth"))
            got = _without_key_bias(torch.load(runs["distill"] / f"seed{seed}" / "student.pth"))
            gap = max((ref[k] - got[k]).abs().max().item() for k in ref)
            assert gap < ATOL_WEIGHTS, (seed, gap)
        craft_log = logs[1].read_text()
        assert "launching craft_student job on 2 processes" in craft_log
        assert "[rank 1/2]" in craft_log
        for seed in (0, 1):
            metrics = json.loads((runs["craft"] / f"seed{seed}" / "metrics.json").read_text())
            assert metrics["method"] == "crd" and metrics["nan_count"] == 0
            prov = json.loads((runs["craft"] / f"seed{seed}" / "provenance.json").read_text())
            assert prov["seed"] == seed
    finally:
        for key, run_dir in runs.items():
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.move(saved[key], run_dir)
