"""A training job's time limit (sbatch -t) follows its plan, with a margin (robustkd.timelimit).

The shipped SLURM profile asked 24 h of every distillation, which `robustkd plan` puts at about
half a GPU-hour: such a limit waits longer in the queue for nothing.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

from robustkd.config import load_config
from robustkd.plan import OFFICIAL_SIZES, plan_jobs
from robustkd.timelimit import FLOOR, MARGIN, OVERHEAD, UNPLANNED, job_runtime
from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "distill": "results/distill/ours/mask-0.90/seed0/student.pth",
    "transfer": "results/finetune/cifar10/ours/mask-0.90/frac1/seed0/metrics.json",
    "finetune": "results/finetune/imagenet100/ours/mask-0.90/frac1/seed0/metrics.json",
}


def _runtimes(dry_run: str) -> dict[str, tuple[int, dict[str, str]]]:
    """Rule -> (runtime, wildcards) of each job of a dry-run listing."""
    out = {}
    pattern = r"rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)\n    resources: (.*)"
    for rule, wildcards, resources in re.findall(pattern, dry_run):
        wc = dict(kv.split("=", 1) for kv in wildcards.split(", "))
        out[rule] = (int(re.search(r"runtime=(\d+)", resources).group(1)), wc)
    return out


def test_the_profile_asks_the_plans_time_at_paper_scale(tmp_path):
    """Paper config, shipped profile: the limits are the plan's time x margin, hours not days."""
    cmd = [sys.executable, "-m", "snakemake", "-s", ROOT / "Snakefile", *TARGETS.values()]
    cmd += ["--dry-run", "--profile", ROOT / "profiles" / "slurm"]
    proc = bounded.run(
        cmd, what="dry run with the SLURM profile", timeout=bounded.QUICK, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runtimes = _runtimes(proc.stdout)
    assert set(TARGETS) <= set(runtimes), proc.stdout[-3000:]
    config = load_config(ROOT / "config" / "config.yaml")
    for rule in TARGETS:
        minutes, wildcards = runtimes[rule]
        assert minutes == job_runtime(rule, wildcards, config, OFFICIAL_SIZES), rule
    planned = plan_jobs([("distill", runtimes["distill"][1])], config, OFFICIAL_SIZES)[0]
    hours = planned.gpu_hours({"distill": 1700.0, "evaluate": 6000.0})
    assert 0.5 < hours < 0.55  # 25 epochs x 126,689 images at 1,700 img/s
    assert runtimes["distill"][0] == math.ceil(OVERHEAD + MARGIN * 60 * hours) == 109
    assert runtimes["transfer"][0] == 111
    assert runtimes["finetune"][0] == FLOOR


@pytest.mark.parametrize(("attempt", "minutes"), [(1, 109), (2, 218), (3, 327)])
def test_each_retry_asks_for_one_more_limit(attempt, minutes):
    config = load_config(ROOT / "config" / "config.yaml")
    wildcards = {"distill_method": "ours", "distortion": "mask-0.90", "seed": "0"}
    assert job_runtime("distill", wildcards, config, OFFICIAL_SIZES, attempt) == minutes


def test_without_a_plan_the_limit_is_the_long_default():
    config = load_config(ROOT / "config" / "config.yaml")
    wildcards = {"distill_method": "ours", "distortion": "mask-0.90", "seed": "0"}
    assert job_runtime("distill", wildcards, config, {}) == UNPLANNED  # size unknown
    assert (
        job_runtime("make_table", {"table": "table1"}, config, OFFICIAL_SIZES, 2) == 2 * UNPLANNED
    )
