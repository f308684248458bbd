"""Data-parallel training: 2 torchrun processes on gloo against 1 process at the same batch.

Tolerance of the comparison, and why it is not zero: the two runs see the same images, the
same masks and noise and the same learning-rate schedule, so they differ only in floating-point
rounding. One process averages the loss over 8 images; two processes each average over 4 and
DDP averages their gradients, and the matrix products run on 4 instead of 8 rows. Each such
rounding difference is about 1e-7 relative (float32), and ten AdamW steps carry it along. We
require every weight to agree within 1e-5 absolute (measured: about 1e-7) while training moves
them by about 5e-3, and the logged losses to agree within 1e-5 relative or 1e-7 absolute (the
attention KL, about 1e-3, is a difference of nearly equal log-probabilities: 1e-5 relative
measured). A sharding bug (wrong slice, a batch seen twice, gradients not averaged, other masks)
moves the weights by the order of training itself.

One exception: the key part of each attention block's qkv bias. Adding a constant vector to all
keys adds the same number to every logit of a query's softmax, so its gradient is exactly zero
in exact arithmetic and pure rounding noise in practice, which AdamW normalises into steps of
size lr, different in each run. Those entries are compared with nothing (measured gap: 2e-3).
"""

import json
import os
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robustkd.distortions import batch_shard, create_distortion
from robustkd.engine.checkpoint import load_checkpoint
from robustkd.engine.devices import DEVICE_ENV
from robustkd.engine.distributed import DistContext, JobReferenceError, LaunchError, run_job
from robustkd.engine.faults import ABORT_AFTER_JOB_ENV, GROUP_TERM_ENV, KILL_ENV, TERM_ENV
from robustkd.engine.optim import TrainConfig
from robustkd.engine.preemption import Preempted
from robustkd.engine.runlock import LOCK_NAME
from robustkd.errors import RobustKDError
from robustkd.losses.contrastive_inversion import contrastive_inversion_loss
from tests import bounded
from tests.test_resume import (  # noqa: F401  (setup: the module's prepared data)
    distill_kwargs,
    setup,
    weights_sha256,
)

DISTILL = "robustkd.engine.jobs:distill_job"  # what run_job runs (module:function)
ATOL_WEIGHTS = 1e-5
RTOL_LOSS = 1e-5
ATOL_LOSS = 1e-7


@pytest.fixture(scope="module", autouse=True)
def _gloo_on_cpu():
    """These runs compare with CPU references: gloo ranks on the CPU, even where CUDA is visible
    (on a machine with fewer GPUs than ranks, NCCL would be refused before launch)."""
    with pytest.MonkeyPatch.context() as mp_env:
        mp_env.setenv(DEVICE_ENV, "cpu")
        yield


def _without_key_bias(state):
    """The weights with the key third of every qkv bias removed (see the module docstring)."""
    out = {}
    for name, w in state.items():
        if name.endswith("attn.qkv.bias"):
            q, _, v = w.chunk(3)
            w = torch.cat([q, v])
        out[name] = w
    return out


def _kwargs(root, out):
    return {**distill_kwargs(root, out), "threads": 2}


def _losses(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    "family", [{"family": "mask", "p": 0.6}, {"family": "noise", "sigma": 0.3}]
)
def test_sharded_distortion_equals_the_global_batch(family):
    dist_fn = create_distortion(family)
    x = torch.rand(6, 3, 8, 8)
    whole = dist_fn(x, torch.Generator().manual_seed(3))
    parts = []
    for rank in range(3):
        with batch_shard(rank, 3):
            parts.append(dist_fn(x[rank * 2 : rank * 2 + 2], torch.Generator().manual_seed(3)))
    assert torch.equal(torch.cat(parts), whole)
    # Outside the block a slice gets the draws of a batch of its own size (not the global one).
    alone = dist_fn(x[2:4], torch.Generator().manual_seed(3))
    assert not torch.equal(alone, whole[2:4])


def test_batch_shard_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank 2 outside"), batch_shard(2, 2):
        pass


def test_ci_loss_with_offset_equals_the_global_batch_loss():
    torch.manual_seed(0)
    s, t = torch.randn(8, 16), torch.randn(8, 16)
    whole = contrastive_inversion_loss(s, t, 0.1)
    halves = [contrastive_inversion_loss(s[i : i + 4], t, 0.1, offset=i) for i in (0, 4)]
    assert torch.allclose(sum(h["loss"] for h in halves) / 2, whole["loss"], atol=1e-6)
    mean_cos = sum(h["positive_cosine"] for h in halves) / 2
    assert torch.allclose(mean_cos, whole["positive_cosine"], atol=1e-6)
    with pytest.raises(ValueError, match="offset 6"):
        contrastive_inversion_loss(s[:4], t, 0.1, offset=6)


class _Rows(torch.nn.Module):
    """An encoder that returns fixed embeddings whatever the images."""

    def __init__(self, rows):
        super().__init__()
        self.register_buffer("rows", rows)

    def forward(self, x):
        return self.rows


def _ci_rank(rank, world, init_file, s, t, out):
    from robustkd.engine.distill import ContrastiveInversionTask

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        b = len(s) // world
        mine = slice(rank * b, (rank + 1) * b)  # this rank's part of the global batch
        task = ContrastiveInversionTask(
            _Rows(t[mine]), _Rows(s[mine]), lambda x, g: x, lambda x: x, tau=0.1
        )
        loss = task.loss(torch.zeros(b, 3, 1, 1), torch.zeros(b), torch.Generator())["loss"]
        torch.save(loss, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ci_task_gathers_teacher_embeddings_across_two_gloo_processes(tmp_path):
    torch.manual_seed(1)
    s, t = torch.randn(8, 16), torch.randn(8, 16)
    ranks = mp.start_processes(
        _ci_rank, args=(2, tmp_path / "pg", s, t, tmp_path / "loss"), nprocs=2, join=False
    )
    deadline = time.monotonic() + bounded.QUICK
    while not ranks.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ranks.processes:
                p.kill()
            pytest.fail(f"2 gloo processes of the CI loss hung: running after {bounded.QUICK} s")
    ranks = [torch.load(tmp_path / f"loss.{r}") for r in range(2)]
    whole = contrastive_inversion_loss(s, t, 0.1)["loss"]
    assert torch.allclose((ranks[0] + ranks[1]) / 2, whole, atol=1e-6)
    # Without the gather, each rank's softmax would run over its own 4 embeddings only.
    local = [contrastive_inversion_loss(s[i : i + 4], t[i : i + 4], 0.1)["loss"] for i in (0, 4)]
    assert not torch.allclose((local[0] + local[1]) / 2, whole, atol=1e-3)


def test_two_gloo_processes_match_one_process_at_the_same_global_batch(setup, tmp_path):  # noqa: F811
    run_job(DISTILL, _kwargs(setup, tmp_path / "one" / "student.pth"), processes=1)
    log_file = tmp_path / "two.log"
    run_job(
        DISTILL,
        _kwargs(setup, tmp_path / "two" / "student.pth"),
        processes=2,
        log_file=log_file,
        timeout=bounded.JOB,
    )
    log_text = log_file.read_text()
    assert "[rank 0/2]" in log_text and "[rank 1/2]" in log_text

    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 11))
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "global", "local", "attention", "lr"):
            assert b[key] == pytest.approx(a[key], rel=RTOL_LOSS, abs=ATOL_LOSS), (a["step"], key)

    init = _without_key_bias(torch.load(setup / "teacher.pth"))
    w1 = _without_key_bias(torch.load(tmp_path / "one" / "student.pth"))
    w2 = _without_key_bias(torch.load(tmp_path / "two" / "student.pth"))
    moved = max((w1[k] - init[k]).abs().max().item() for k in w1)
    gap = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-3  # training did move the weights: the comparison has teeth
    assert gap < ATOL_WEIGHTS, f"1 vs 2 processes differ by {gap:.3g} (weights moved {moved:.3g})"

    # Rank 0 alone wrote the outputs, with its provenance, once.
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["seed"] == 0
    assert load_checkpoint(tmp_path / "two" / "checkpoint.pt")["step"] == 10


def test_a_rank_that_aborts_after_every_rank_finished_the_job_loses_nothing(
    setup,  # noqa: F811
    tmp_path,
    monkeypatch,
    caplog,
):
    # As gloo's teardown once aborted rank 1 of this 2-process run ("terminate called without
    # an active exception") after rank 0 had written everything: the job stands, with a warning.
    monkeypatch.setenv(ABORT_AFTER_JOB_ENV, "1")
    out = tmp_path / "two" / "student.pth"
    with caplog.at_level("WARNING", logger="robustkd.engine.distributed"):
        run_job(DISTILL, _kwargs(setup, out), processes=2, timeout=bounded.JOB)
    assert "after every rank had finished the job" in caplog.text
    assert "exited with code 1" in caplog.text  # torchrun's code for a failed rank
    assert out.is_file() and (out.parent / "provenance.json").is_file()
    assert load_checkpoint(out.parent / "checkpoint.pt")["step"] == 10


def test_a_rank_that_dies_inside_the_job_fails_the_launch(setup, tmp_path, monkeypatch):  # noqa: F811
    # The same ranks killed before step 4 never reach the barrier: no rank finished the job.
    monkeypatch.setenv(KILL_ENV, "4")
    out = tmp_path / "two" / "student.pth"
    with pytest.raises(LaunchError, match=r"exited with code \d+; the ranks' errors"):
        run_job(DISTILL, _kwargs(setup, out), processes=2, timeout=bounded.JOB)
    assert not out.exists()


@pytest.fixture(scope="module")
def two_process_student(setup, tmp_path_factory):  # noqa: F811
    """The student of an uninterrupted 2-process run with 6 threads (3 a rank, so 2 loader
    workers each): what the preempted 2-process runs must end at, bit for bit (the CPU kernels'
    sums depend on the threads a rank has)."""
    out = tmp_path_factory.mktemp("two_whole") / "student.pth"
    run_job(DISTILL, {**distill_kwargs(setup, out), "threads": 6}, processes=2, timeout=bounded.JOB)
    return out


def test_preemption_of_a_two_process_run_resumes_identically(
    setup,  # noqa: F811
    two_process_student,
    tmp_path,
    monkeypatch,
):
    cut = tmp_path / "cut" / "student.pth"
    kwargs = {**distill_kwargs(setup, cut), "threads": 6}
    monkeypatch.setenv(TERM_ENV, "7")  # every rank gets SIGTERM before step 7
    # The launcher was not signalled: it reports the ranks' preemption with rank 0's message.
    with pytest.raises(Preempted, match=r"\(2 processes\): SIGTERM received: checkpoint of step 7"):
        run_job(DISTILL, kwargs, processes=2, timeout=bounded.JOB)
    assert not cut.exists()
    assert load_checkpoint(cut.parent / "checkpoint.pt")["step"] == 7
    assert not (cut.parent / LOCK_NAME).exists()  # rank 0 held the folder and released it
    monkeypatch.delenv(TERM_ENV)
    run_job(DISTILL, kwargs, processes=2, timeout=bounded.JOB)
    assert not (cut.parent / LOCK_NAME).exists()
    assert weights_sha256(cut) == weights_sha256(two_process_student)


def _torchrun_job(root, out, log, group_term_at=None):
    """A 2-process distill job in a process of its own, as a workflow script runs it.

    6 threads: 3 a rank, so each rank has 2 data-loader workers. No launch timeout (as in the
    workflow), so torchrun stays in the job's process group; bounded.run limits the whole job.
    """
    code = (
        "import json, sys; from robustkd.engine.distributed import run_job; "
        "from robustkd.joblog import configure_job_logging; configure_job_logging(sys.argv[2]); "
        f"run_job({DISTILL!r}, json.loads(sys.argv[1]), name='distill', processes=2, "
        "log_file=sys.argv[2])"
    )
    env = {k: v for k, v in os.environ.items() if k not in (TERM_ENV, GROUP_TERM_ENV)}
    if group_term_at is not None:
        env[GROUP_TERM_ENV] = str(group_term_at)
    args = {**distill_kwargs(root, out), "threads": 6}
    return bounded.run(
        [sys.executable, "-c", code, json.dumps(args), log],
        what=f"2-process distill job (SIGTERM to its processes at step {group_term_at})",
        timeout=bounded.JOB,
        env=env,
    )


def test_sigterm_to_every_process_of_a_two_process_job_resumes_identically(
    setup,  # noqa: F811
    two_process_student,
    tmp_path,
):
    """SIGTERM to every process of a torchrun job with loader workers, as SLURM sends it: after
    7 steps each rank signals its own process group (itself and its 2 workers) and the launcher's
    (the job's process and torchrun). The launcher must relay it to the ranks and wait, the ranks
    write the checkpoint of step 7 (not the periodic one of step 6 or the epoch end's, 5) and the
    job ends with the Preempted message; the rerun resumes there, bit-identical.
    """
    cut = tmp_path / "cut" / "student.pth"
    stopped = _torchrun_job(setup, cut, tmp_path / "cut.log", group_term_at=7)
    log = (tmp_path / "cut.log").read_text()
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "DataLoader worker" not in log, log[-3000:]
    assert "SIGTERM received: relayed to the ranks; waiting for them" in log  # the launcher's
    # The job's last word (the launcher's, untagged) names the preemption and its step.
    failed = [line for line in log.splitlines() if "job failed:" in line]
    assert failed and "[rank" not in failed[-1], log[-3000:]
    assert (
        "robustkd.job: job failed: Preempted: distill job under torchrun (2 processes): "
        "SIGTERM received: checkpoint of step 7 written"
    ) in failed[-1]
    assert not cut.exists()
    ckpt = load_checkpoint(cut.parent / "checkpoint.pt")
    assert (ckpt["step"], ckpt["train_config"]["workers"]) == (7, 2)

    rerun = _torchrun_job(setup, cut, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "at step 7/10" in (tmp_path / "rerun.log").read_text()
    assert weights_sha256(cut) == weights_sha256(two_process_student)


def test_global_batch_must_split_evenly_between_processes(setup, tmp_path, monkeypatch):  # noqa: F811
    from robustkd.engine import loop

    monkeypatch.setattr(loop, "context", lambda: DistContext(rank=0, world=3))
    with pytest.raises(ValueError, match="global batch size 8 does not split evenly between 3"):
        loop.train(
            None,  # type: ignore[arg-type]  # refused before the task is touched
            [],  # type: ignore[arg-type]
            TrainConfig(epochs=1, batch_size=8, lr=1e-3),
            seed=0,
            run_dir=tmp_path,
            device=torch.device("cpu"),
        )
    assert os.listdir(tmp_path) == []


def test_unknown_job_name_is_refused():
    with pytest.raises(ValueError, match="unknown training job 'distil'"):
        run_job("distil", {}, processes=1)


@pytest.mark.parametrize(
    ("job", "why"),
    [
        ("robustkd.engine.jobs:distil_job", "module 'robustkd.engine.jobs' has no function"),
        ("robustkd.engine.jobz:distill_job", "no module 'robustkd.engine.jobz'"),
        ("robustkd.engine.jobs", "not a 'module:function' reference"),
    ],
)
def test_a_job_reference_that_names_no_function_is_refused(job, why):
    with pytest.raises(JobReferenceError, match=why) as err:
        run_job(job, {}, name="distil", processes=1)
    assert isinstance(err.value, RobustKDError)
    assert "unknown training job 'distil'" in str(err.value) and job in str(err.value)
