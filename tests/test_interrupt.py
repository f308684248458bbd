"""Ctrl-C ends a job with one line: where its checkpoint is, and that a rerun resumes from it.

A terminal's Ctrl-C sends SIGINT to every process of the foreground group: Snakemake, the job,
and the job's data-loader workers. The job then stops with Python's ``KeyboardInterrupt``, which
:func:`robustkd.joblog.log_uncaught` turns into one line instead of a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustkd import joblog
from robustkd.data.imagenet100 import prepare, write_demo_raw
from robustkd.engine.checkpoint import load_checkpoint
from robustkd.engine.faults import STOP_ENV
from robustkd.models.backbones import create_backbone
from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"img_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
LINE = re.compile(
    r"ERROR robustkd\.job: interrupted \(SIGINT, Ctrl-C\): checkpoint of step (\d+) in (\S+); "
    r"rerun the same command to resume from it$"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    classes = ROOT / "config" / "imagenet100.txt"
    write_demo_raw(
        root / "raw",
        seed=0,
        class_list=classes,
        n_classes=2,
        train_per_class=20,
        val_per_class=2,
        size=20,
    )
    prepare(root / "raw", root / "data", class_list=classes, n_classes=2)
    teacher = create_backbone(
        {"timm_name": "vit_tiny_patch16_224", "weights": None, "kwargs": KWARGS}
    )
    torch.save(teacher.state_dict(), root / "teacher.pth")
    return root


def _distill(root: Path, out: Path, stop_at: int | None = None):
    """A distill job in its own process, as a workflow script runs it (job logging on)."""
    args = {
        "method": "ours",
        "backbone": {
            "timm_name": "vit_tiny_patch16_224",
            "weights": str(root / "teacher.pth"),
            "kwargs": KWARGS,
        },
        "loss_weights": {"lambda_g": 1.0, "lambda_l": 1.0, "lambda_a": 10.0, "tau": 0.1},
        "distortion": {"family": "mask", "p": 0.75},
        # 40 images, batch 8: 5 steps per epoch; checkpoints at steps 2, 4, 5, 6, ...
        "train_cfg": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "checkpoint_every": 2},
        "data_dir": str(root / "data"),
        "views": {"crop_scale": [0.5, 1.0], "preload_size": 20},
        "seeds": [0],
        "outputs": [str(out)],
        "threads": 3,  # 2 data-loader workers: they get the terminal's SIGINT too
    }
    # SIGINT at its default, as for a job in a terminal's foreground group (a shell starts a
    # background job, CI's for one, with SIGINT ignored, and children inherit that).
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "import json, sys; from robustkd.engine.jobs import distill_job; "
        "from robustkd.joblog import configure_job_logging; "
        "configure_job_logging(sys.argv[2]); distill_job(**json.loads(sys.argv[1]))"
    )
    env = {k: v for k, v in os.environ.items() if k != STOP_ENV}
    if stop_at is not None:
        env[STOP_ENV] = str(stop_at)
    cmd = [sys.executable, "-c", code, json.dumps(args), str(out.parent / "job.log")]
    return cmd, env


def test_ctrl_c_in_training_ends_with_one_line_naming_the_checkpoint(data, tmp_path):
    out = tmp_path / "run" / "student.pth"
    cmd, env = _distill(data, out, stop_at=7)
    what = "distill job held before step 7"
    job = bounded.start_until_stopped(cmd, what=what, timeout=bounded.JOB, env=env)
    # Ctrl-C: SIGINT to the job's whole process group (the job and its loader workers).
    os.killpg(job.pid, signal.SIGINT)
    done = bounded.continue_stopped(job, what=what, timeout=bounded.JOB)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    match = LINE.search(last)
    assert match, done.stderr[-3000:]
    step, path = int(match.group(1)), Path(match.group(2))
    assert path == out.parent / "checkpoint.pt"
    assert step == 6 == load_checkpoint(path)["step"]
    # The job's log ends with the same line.
    assert LINE.search((out.parent / "job.log").read_text().strip().splitlines()[-1])

    # A rerun (the same job, not held this time) resumes from it and finishes.
    cmd, env = _distill(data, out)
    rerun = bounded.run(cmd, what="distill job rerun", timeout=bounded.JOB, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {path} at step 6/10" in rerun.stderr
    assert out.is_file()


def test_the_line_without_a_checkpoint_or_before_the_first(tmp_path):
    try:
        joblog.note_checkpoint(None, None)
        assert joblog.interrupted_message() == (
            "interrupted (SIGINT, Ctrl-C); rerun the same command to run this job again "
            "(a training job resumes from its last checkpoint)"
        )
        joblog.note_checkpoint(tmp_path / "checkpoint.pt", None)
        assert joblog.interrupted_message() == (
            f"interrupted (SIGINT, Ctrl-C) before the first checkpoint of "
            f"{tmp_path / 'checkpoint.pt'}; rerun the same command to start this run again "
            "(runs already finished are not retrained)"
        )
    finally:
        joblog.note_checkpoint(None, None)


def test_ctrl_c_while_a_workflow_script_starts_is_one_line_too(tmp_path):
    """Before the job configures logging (its imports take seconds): the checkout's hook."""
    log = tmp_path / "logs" / "job.log"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from robustkd_checkout import _log_uncaught_to; _log_uncaught_to(sys.argv[2]); "
        "raise KeyboardInterrupt"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "workflow" / "scripts"), str(log)],
        capture_output=True,
        text=True,
        timeout=bounded.QUICK,
        check=False,
    )
    assert proc.returncode != 0
    line = (
        "interrupted (SIGINT, Ctrl-C) while the job started; rerun the same command to run it "
        "again\n"
    )
    assert proc.stderr == line
    assert log.read_text() == line
