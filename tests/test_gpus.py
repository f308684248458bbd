"""A job's GPU request: one request per job, and the processes follow whichever one is given.

The real sbatch arguments are checked in tests/test_slurm.py (SLURM's records of the jobs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustkd.errors import ConfigError
from robustkd.gpus import check_gpu_requests, gpu_processes, stated_requests

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("resources", "processes"),
    [
        ({}, 1),
        ({"gpu": 1}, 1),
        ({"gpu": 2}, 2),
        ({"gpu": "4", "gpu_model": "a100"}, 4),
        ({"gres": "gpu"}, 1),
        ({"gres": "gpu:2"}, 2),
        ({"gres": "gpu:a100"}, 1),
        ({"gres": "gpu:a100:2"}, 2),
        ({"gres": "gpu:a100:2,tmpdisk:100"}, 2),
        ({"gres": "tmpdisk:100"}, 1),
        ({"gres": "tmpdisk:100", "gpu": 3}, 3),
        ({"gpu": 0}, 1),
    ],
)
def test_processes_follow_the_gpu_request(resources, processes):
    assert gpu_processes(resources) == processes


def test_two_gpu_requests_are_refused_naming_both():
    with pytest.raises(ConfigError, match=r"distill: GPUs requested twice, gpu=1 and gres='gpu:a1"):
        gpu_processes({"gpu": 1, "gres": "gpu:a100:2"}, "distill")
    with pytest.raises(ConfigError, match=r"distill: resource gpu='two' is not a whole number"):
        gpu_processes({"gpu": "two"}, "distill")


def test_profile_check_combines_default_and_rule_resources():
    check_gpu_requests({"mem_mb": 4000}, {"distill": {"gres": "gpu:a100:2"}})
    with pytest.raises(ConfigError, match="distill: GPUs requested twice"):
        check_gpu_requests({"gpu": 1}, {"distill": {"gres": "gpu:a100:2"}})
    with pytest.raises(ConfigError, match="default-resources: GPUs requested twice"):
        check_gpu_requests({"gpu": 1, "gres": "gpu:1"}, {})


def _dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "results/teachers/vit/seed0/model.pth", "--dry-run"]
    cmd += [*args, "--forceall", "--configfile", "config/demo.yaml", "config/tiny.yaml"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def test_rules_leave_the_gpu_request_to_the_profile():
    """A gres given for a rule is its only GPU request: the rules declare no `gpu` themselves."""
    rules = sorted(ROOT.glob("workflow/rules/*.smk"))
    declared = [r.name for r in rules if re.search(r"^\s*gpu\s*=", r.read_text(), re.M)]
    assert declared == []
    proc = _dry_run("--set-resources", "pretrain_backbone:gres=gpu:a100:2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = re.search(r"rule pretrain_backbone:\n(?:    .*\n)*?    resources: (.*)", proc.stdout)
    assert job is not None, proc.stdout[-3000:]
    assert "gres=gpu:a100:2" in job.group(1)
    assert "gpu=" not in job.group(1).replace("gres=gpu:", "")


def test_both_requests_stop_the_workflow_before_any_job():
    proc = _dry_run(
        "--set-resources", "pretrain_backbone:gres=gpu:a100:2", "pretrain_backbone:gpu=1"
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid resources: pretrain_backbone: GPUs requested twice" in said
    assert "keep one of them in your profile's set-resources" in said


@pytest.mark.parametrize(
    "args",
    [
        # The command line keeps a quoted string as an expression, quotes and all.
        ("--set-resources", "pretrain_backbone:gpu=1", 'pretrain_backbone:gres="gpu:a100:2"'),
        ("--set-resources", "pretrain_backbone:gres='gpu:2'", "--default-resources", "gpu=1"),
    ],
)
def test_both_requests_on_the_command_line_stop_the_workflow(args):
    proc = _dry_run(*args)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid resources: pretrain_backbone: GPUs requested twice, gpu=1 and gres=" in said
    assert "(or in --set-resources on the command line)" in said


def test_a_quoted_gres_alone_is_the_request():
    proc = _dry_run("--set-resources", 'pretrain_backbone:gres="gpu:a100:2"')
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = re.search(r"rule pretrain_backbone:\n(?:    .*\n)*?    resources: (.*)", proc.stdout)
    assert job is not None and "gres=gpu:a100:2" in job.group(1), proc.stdout[-3000:]


def test_stated_requests_read_snakemake_resources_as_sbatch_gets_them():
    from snakemake.resources import Resources

    parsed = Resources.parse(
        ['gres="gpu:a100:2"', "gpu=2", "mem_mb=1000", "runtime=f(attempt)"], allow_expressions=True
    )
    assert stated_requests(parsed) == {"gres": "gpu:a100:2", "gpu": 2}
    assert stated_requests(Resources.parse(["gres=gpu:a100:2"], allow_expressions=True)) == {
        "gres": "gpu:a100:2"
    }
    assert stated_requests(Resources.parse(["gpu=2*n"], allow_expressions=True)) == {}
