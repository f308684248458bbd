"""`jobs.seeds_per_job`: one training job per seed, or every seed in one job, same files.

The setting changes only how Snakemake groups the seeds into jobs: the dry runs below count the
jobs both ways (tiny overlay) and on the paper config, and one distillation and its fine-tuning,
run both ways on the tiny overlay, write byte-identical files.
"""

import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from robustkd.config import load_config
from robustkd.plan import parse_dry_run
from tests import bounded
from tests.conftest import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
TINY = [ROOT / "config/demo.yaml", ROOT / "config/tiny.yaml"]
# The rules that train seeds grouped by jobs.seeds_per_job (pretrain_backbone trains one teacher
# per seed whatever the setting, craft_teacher one model).
TRAINING = {"distill", "distill_ci", "finetune", "finetune_fractions", "transfer", "craft_student"}
# Fields of provenance.json that differ between any two runs, by design: wall-clock times, the
# training speed, and the path of the temporary copy of the script Snakemake runs (argv).
PER_RUN = ("started", "finished", "argv")
PER_RUN_TRAIN = ("seconds", "images_per_s")


def _overlay(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / f"seeds_{mode}.yaml"
    path.write_text(f"jobs: {{seeds_per_job: {mode}}}\n")
    return path


def _dry_run(workdir: Path, configs, *targets: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job of ``targets`` (forced dry run, from ``workdir``)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", ROOT / "Snakefile", *(targets or ["all"])]
    cmd += ["--dry-run", "--forceall", "--cores", "1"]
    if configs:
        cmd += ["--configfile", *configs]
    proc = bounded.run(cmd, what="Snakemake dry run", timeout=bounded.QUICK, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return parse_dry_run(proc.stdout + proc.stderr)


def _seeds_by_job(jobs) -> dict[tuple[str, tuple], list[str]]:
    """Training jobs grouped by rule and wildcards other than the seed: the seeds of each."""
    out: dict[tuple[str, tuple], list[str]] = {}
    for rule, wc in jobs:
        if rule in TRAINING:
            key = (rule, tuple(sorted((k, v) for k, v in wc.items() if k != "seed")))
            out.setdefault(key, []).append(wc.get("seed", "all"))
    return out


def test_job_counts_follow_the_setting(tmp_path):
    every = _dry_run(tmp_path, [*TINY, _overlay(tmp_path, "all")])
    each = _dry_run(tmp_path, [*TINY, _overlay(tmp_path, "one")])
    seeds = [str(s) for s in load_config(ROOT / "config/config.yaml", *TINY)["seeds"]]
    assert len(seeds) == 2
    n_every, n_each = Counter(r for r, _ in every), Counter(r for r, _ in each)
    assert TRAINING <= set(n_every)
    for rule in n_every | n_each:
        factor = len(seeds) if rule in TRAINING else 1
        assert n_each[rule] == factor * n_every[rule], rule
    # every seed: no seed wildcard; one per seed: each configured seed once per training job
    assert all(v == ["all"] for v in _seeds_by_job(every).values())
    assert _seeds_by_job(every).keys() == _seeds_by_job(each).keys()
    assert all(sorted(v) == seeds for v in _seeds_by_job(each).values())


def _teacher_inputs(workdir: Path, configs) -> list[tuple[str, dict[str, str], list[str]]]:
    """(rule, wildcards, teacher weights among its inputs) of every job of ``all``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", ROOT / "Snakefile", "all", "--dry-run"]
    cmd += ["--forceall", "--cores", "1", "--configfile", *configs]
    proc = bounded.run(cmd, what="Snakemake dry run", timeout=bounded.QUICK, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = []
    for block in re.split(r"^(?:local)?rule ", proc.stdout, flags=re.M)[1:]:
        inputs = re.search(r"^    input: (.*)$", block, re.M)
        wildcards = re.search(r"^    wildcards: (.*)$", block, re.M)
        files = inputs.group(1).split(", ") if inputs else []
        jobs.append(
            (
                block.split(":", 1)[0],
                dict(kv.split("=", 1) for kv in wildcards.group(1).split(", "))
                if wildcards
                else {},
                [f for f in files if f.startswith("results/teachers/")],
            )
        )
    return jobs


@pytest.mark.parametrize("mode", ["one", "all"])
def test_each_seed_learns_from_its_own_teacher(tmp_path, mode):
    """The pipeline pretrains one stand-in teacher per backbone and seed, and the students and
    supervised baseline of seed s start from teacher s only; a fine-tuning of a student reads
    no teacher (it starts from the student). With every seed in one job, the job reads each
    seed's teacher."""
    jobs = _teacher_inputs(tmp_path, [*TINY, _overlay(tmp_path, mode)])
    pretrained = {
        (wc["backbone"], wc["seed"]) for rule, wc, _ in jobs if rule == "pretrain_backbone"
    }
    assert pretrained == {(b, s) for b in ("vit", "clip") for s in ("0", "1")}
    by_rule = Counter(rule for rule, _, _ in jobs)
    assert by_rule["distill"] and by_rule["distill_ci"] and by_rule["finetune"]
    for rule, wc, teachers in jobs:
        seeds = [wc.get("seed")] if mode == "one" else ["0", "1"]
        if rule in ("distill", "distill_ci") or (
            rule == "finetune" and wc["method"] == "supervised"
        ):
            backbone = "clip" if rule == "distill_ci" else "vit"
            assert teachers == [f"results/teachers/{backbone}/seed{s}/model.pth" for s in seeds]
        elif rule in ("finetune", "finetune_fractions", "transfer"):
            assert teachers == [] or wc["method"] == "supervised", (rule, wc, teachers)


def test_a_seed_outside_the_config_has_no_job(tmp_path):
    """The {seed} wildcard matches the configured seeds only (here 0 and 1)."""
    target = "results/distill/ours/mask-0.90/seed7/student.pth"
    cmd = [sys.executable, "-m", "snakemake", "-s", ROOT / "Snakefile", "--dry-run", target]
    cmd += ["--cores", "1", "--configfile", *TINY, _overlay(tmp_path, "one")]
    proc = bounded.run(cmd, what="Snakemake dry run", timeout=bounded.QUICK, cwd=tmp_path)
    assert proc.returncode != 0
    assert f"No rule to produce {target}" in proc.stdout + proc.stderr


def test_paper_config_runs_one_training_job_per_seed(tmp_path):
    jobs = _dry_run(tmp_path, [])  # config/config.yaml alone
    seeds = sorted(str(s) for s in load_config(ROOT / "config/config.yaml")["seeds"])
    by_job = _seeds_by_job(jobs)
    assert {rule for rule, _ in by_job} == TRAINING
    assert all(sorted(v) == seeds for v in by_job.values()), by_job
    assert sum(map(len, by_job.values())) == len(seeds) * len(by_job)


def _provenance(path: Path) -> dict:
    record = json.loads(path.read_text())
    for key in PER_RUN:
        record.pop(key)
    for key in PER_RUN_TRAIN:
        record["train"].pop(key)
    return record


@pytest.mark.e2e
def test_both_groupings_write_identical_files(tmp_path):
    """One distillation and its fine-tuning (ours, mask-0.90, 2 seeds), every seed in one job
    and then one job per seed: the same files in each seed's folder, byte for byte (students,
    classifiers, metrics, checkpoints, training logs), and the same provenance but for the
    per-run fields named in PER_RUN and PER_RUN_TRAIN."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    configs = ["config/demo.yaml", "config/tiny.yaml"]

    def snakemake(*args, what):
        cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile"]
        proc = bounded.run([*cmd, *configs], what=what, timeout=bounded.JOB, cwd=work)
        assert proc.returncode == 0, f"{what} failed:\n{proc.stderr[-4000:]}"
        return proc

    teachers = [f"results/teachers/vit/seed{s}/model.pth" for s in (0, 1)]
    snakemake("results/data/imagenet100", *teachers, what="data, teachers")
    base = "results/finetune/imagenet100/ours/mask-0.90/frac1"
    targets = [f"{base}/seed{s}/metrics.json" for s in (0, 1)]
    trained = ("results/distill", "results/finetune")

    configs.append(str(_overlay(tmp_path, "all")))
    proc = snakemake(*targets, what="every seed per job")
    assert Counter(r for r, _ in parse_dry_run(proc.stderr)) == {"distill": 1, "finetune": 1}
    first = tmp_path / "first"
    for d in trained:
        shutil.move(work / d, first / d)

    configs[-1] = str(_overlay(tmp_path, "one"))
    proc = snakemake(*targets, what="one job per seed")
    assert Counter(r for r, _ in parse_dry_run(proc.stderr)) == {"distill": 2, "finetune": 2}

    files = sorted(p.relative_to(first) for d in trained for p in (first / d).rglob("*"))
    again = sorted(p.relative_to(work) for d in trained for p in (work / d).rglob("*"))
    assert files == again
    names = {p.name for p in files if (first / p).is_file()}
    assert {"student.pth", "model.pth", "metrics.json", "checkpoint.pt", "log.jsonl"} <= names
    for rel in files:
        a, b = first / rel, work / rel
        if a.is_dir():
            continue
        if rel.name == "provenance.json":
            assert _provenance(a) == _provenance(b), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
