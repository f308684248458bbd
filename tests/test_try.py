"""`make try`: the one-minute first look, Table 1 of the tiny overlay in a working directory of
its own (``tiny/``), apart from the demo's ``results/``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
COMMAND = (
    "snakemake table1 --cores 2 --scheduler greedy --configfile config/demo.yaml config/tiny.yaml"
    " -d tiny"
)


def test_make_try_runs_the_documented_command():
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    # -n: print the recipes only (and those of the venv set-up, where it is not done yet).
    proc = subprocess.run(
        ["make", "-n", "try", "BIN=.venv/bin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=bounded.QUICK,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.replace("\\\n", " ").split())
    assert f".venv/bin/{COMMAND}" in said


def test_the_try_is_table1_of_the_tiny_overlay(tmp_path):
    """Its dry run, as typed in the checkout (into a scratch working directory): 20 small jobs."""
    args = shlex.split(COMMAND)[1:]
    args[args.index("-d") + 1] = str(tmp_path / "tiny")
    proc = bounded.run(
        [sys.executable, "-m", "snakemake", *args, "--dry-run"],
        what="dry run of the try",
        timeout=bounded.QUICK,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = Counter(re.findall(r"^rule (\w+):$", proc.stdout, flags=re.M))
    assert jobs == {
        "demo_raw": 1,
        "prepare_imagenet100": 1,
        "prepare_pretrain_corpus": 1,
        "pretrain_backbone": 4,
        "distill": 2,
        "distill_ci": 2,
        "finetune": 6,
        "make_table": 1,
        "provenance_page": 1,
        "table1": 1,
    }
