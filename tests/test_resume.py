"""A distillation killed with SIGKILL mid-epoch resumes to bit-identical student weights.

Its run folder has one writer at a time: a second job on it stops at once, a killed job's lock
is taken over by the rerun, and a finished or preempted job leaves no lock behind.
"""

import hashlib
import json
import os
import signal
import socket
import sys

import pytest
import torch

from robustkd.data.imagenet100 import prepare, write_demo_raw
from robustkd.engine.checkpoint import load_checkpoint
from robustkd.engine.faults import GROUP_TERM_ENV, KILL_ENV, STOP_ENV, TERM_ENV
from robustkd.engine.runlock import LOCK_NAME, read_lock
from robustkd.models.backbones import create_backbone
from tests import bounded

KWARGS = {"img_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, class_list=None):
    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("resume")
    write_demo_raw(
        root / "raw",
        seed=0,
        class_list=ROOT / "config" / "imagenet100.txt",
        n_classes=2,
        train_per_class=20,
        val_per_class=2,
        size=20,
    )
    prepare(
        root / "raw", root / "data", class_list=ROOT / "config" / "imagenet100.txt", n_classes=2
    )
    teacher = create_backbone(
        {"timm_name": "vit_tiny_patch16_224", "weights": None, "kwargs": KWARGS}
    )
    torch.save(teacher.state_dict(), root / "teacher.pth")
    return root


def distill_kwargs(root, out):
    """The arguments of a small distill_job on the module's data (also used by DDP tests)."""
    return dict(
        method="ours",
        backbone={
            "timm_name": "vit_tiny_patch16_224",
            "weights": str(root / "teacher.pth"),
            "kwargs": KWARGS,
        },
        loss_weights={"lambda_g": 1.0, "lambda_l": 1.0, "lambda_a": 10.0, "tau": 0.1},
        distortion={"family": "mask", "p": 0.75},
        train_cfg={
            "epochs": 2,
            "batch_size": 8,
            "lr": 1e-3,
            "weight_decay": 0.05,
            "warmup_epochs": 0.5,
            "clip_grad": 3.0,
            "checkpoint_every": 2,
        },
        data_dir=str(root / "data"),
        views={"crop_scale": [0.5, 1.0], "preload_size": 20},
        seeds=[0],
        outputs=[str(out)],
    )


def weights_sha256(path):
    """sha256 of a state dict's tensors (names, dtypes, shapes, bytes), not of the file's bytes.

    torch.save names the archive inside the file after the file it writes (a temporary name with
    the writer's pid here), so two files of equal weights differ in their bytes.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(torch.load(path).items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# Run in the job's process before it starts: each checkpoint write first sleeps a second, as a
# slow disk would, so an asynchronous write is still in flight when the next steps run.
SLOW_DISK = (
    "import time; import robustkd.engine.checkpoint as c; _save = c._atomic_torch_save; "
    "c._atomic_torch_save = lambda *a, **k: (time.sleep(1.0), _save(*a, **k))[1]; "
)


def _command(
    root,
    out,
    kill_at=None,
    term_at=None,
    stop_at=None,
    group_term_at=None,
    threads=1,
    prelude="",
    **train,
):
    """The command and environment of a distill job in its own process, with test hooks.

    ``prelude`` is Python run first in that process; ``train`` updates its ``train_cfg``.
    """
    args = {**distill_kwargs(root, out), "threads": threads}
    args["train_cfg"] = {**args["train_cfg"], **train}
    code = prelude + (
        "import json, sys; from robustkd.engine.jobs import distill_job; "
        "from robustkd.joblog import configure_job_logging; configure_job_logging(None); "
        "distill_job(**json.loads(sys.argv[1]))"
    )
    env = dict(os.environ)
    hooks = {KILL_ENV: kill_at, TERM_ENV: term_at, STOP_ENV: stop_at, GROUP_TERM_ENV: group_term_at}
    for name, at in hooks.items():
        env.pop(name, None)
        if at is not None:
            env[name] = str(at)
    what = (
        f"distill job ({threads} threads; kill at {kill_at}, SIGTERM at {term_at}, SIGSTOP at "
        f"{stop_at}, SIGTERM to its process group at {group_term_at})"
    )
    return [sys.executable, "-c", code, json.dumps(args)], env, what


def _job(root, out, kill_at=None, term_at=None, group_term_at=None, threads=1):
    cmd, env, what = _command(
        root, out, kill_at=kill_at, term_at=term_at, group_term_at=group_term_at, threads=threads
    )
    return bounded.run(cmd, what=what, timeout=bounded.JOB, env=env)


@pytest.fixture
def stopped_job():
    """Start a distill job that stops itself (SIGSTOP) before a step, holding its run folder.

    Called as ``stopped_job(root, out, stop_at, term_at=None)``; returns the stopped process and
    its description. One the test leaves stopped (a failed assertion) is killed at the end.
    """
    started = []

    def start(root, out, stop_at, term_at=None):
        cmd, env, what = _command(root, out, term_at=term_at, stop_at=stop_at)
        started.append(bounded.start_until_stopped(cmd, what=what, timeout=bounded.JOB, env=env))
        return started[-1], what

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _holder(run_dir):
    """Who the run folder's lock file names (None: no lock file)."""
    return read_lock(run_dir / LOCK_NAME)


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    """The student of an uninterrupted run with N threads, ``uninterrupted(N)``, run once per N.

    A rerun is compared with a run of the same threads: the CPU kernels' sums depend on the
    intra-op thread count (the loader workers do not change a bit).
    """
    students = {}

    def student(threads=1):
        if threads not in students:
            out = tmp_path_factory.mktemp(f"whole{threads}") / "student.pth"
            whole = _job(setup, out, threads=threads)
            assert whole.returncode == 0, whole.stderr[-3000:]
            students[threads] = out
        return students[threads]

    return student


def test_sigkill_mid_epoch_then_rerun_is_bit_identical(setup, uninterrupted, tmp_path):
    # 40 images, batch 8: 5 steps per epoch; checkpoints at steps 2 and 4 and at the epoch
    # end (5), 6, 8 and 10. The kill comes after 7 steps, mid-epoch 2: step 7 is lost.
    killed = _job(setup, tmp_path / "cut" / "student.pth", kill_at=7)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "student.pth").exists()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 6
    # The killed job could not release its run folder: its lock file names its (gone) pid.
    leftover = _holder(tmp_path / "cut")
    assert leftover is not None and leftover.host == socket.gethostname()

    rerun = _job(setup, tmp_path / "cut" / "student.pth")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stderr and "at step 6/10" in rerun.stderr
    # The rerun took the stale lock over, said so, and released it at its end.
    assert f"taking over the lock of run folder {tmp_path / 'cut'}" in rerun.stderr
    assert f"pid {leftover.pid}, since {leftover.since}" in rerun.stderr
    assert _holder(tmp_path / "cut") is None
    assert _holder(uninterrupted().parent) is None
    a = torch.load(uninterrupted())
    b = torch.load(tmp_path / "cut" / "student.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_kill_waits_for_the_asynchronous_checkpoint_in_flight(setup, uninterrupted, tmp_path):
    # As above, with checkpoints written on a background thread to a disk that takes a second
    # per write: the step-6 write is still in flight when step 7 is due. The injected kill
    # strikes once it is on disk, so the run resumes from step 6, not from whatever was written.
    cmd, env, what = _command(
        setup, tmp_path / "cut" / "student.pth", kill_at=7, prelude=SLOW_DISK, checkpoint_async=True
    )
    killed = bounded.run(cmd, what=what, timeout=bounded.JOB, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 6

    rerun = _job(setup, tmp_path / "cut" / "student.pth")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stderr and "at step 6/10" in rerun.stderr
    assert weights_sha256(tmp_path / "cut" / "student.pth") == weights_sha256(uninterrupted())


def test_preemption_signal_checkpoints_then_resumes_identically(
    setup, uninterrupted, tmp_path, stopped_job
):
    """SIGTERM (a cluster's preemption notice) mid-epoch: checkpoint, exit, rerun, same weights."""
    # Held mid-run (SIGSTOP before step 5), the job holds its run folder under its own pid.
    job, what = stopped_job(setup, tmp_path / "cut" / "student.pth", stop_at=5, term_at=7)
    holder = _holder(tmp_path / "cut")
    assert holder is not None and (holder.host, holder.pid) == (socket.gethostname(), job.pid)
    stopped = bounded.continue_stopped(job, what=what, timeout=bounded.JOB)
    assert stopped.returncode == 1
    assert "SIGTERM received: checkpoint of step 7" in stopped.stderr
    assert not (tmp_path / "cut" / "student.pth").exists()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 7
    assert _holder(tmp_path / "cut") is None  # released on the preemption: the rerun may start
    rerun = _job(setup, tmp_path / "cut" / "student.pth")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "at step 7/10" in rerun.stderr and "taking over" not in rerun.stderr
    assert _holder(tmp_path / "cut") is None
    a = torch.load(uninterrupted())
    b = torch.load(tmp_path / "cut" / "student.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_writer_of_a_run_folder_stops_at_once(setup, tmp_path, stopped_job):
    """Two jobs on one run folder (snakemake --nolock, or two working directories sharing
    results/): the second stops before it trains, naming the folder and the first job; the first
    finishes with exactly one log line per step."""
    out = tmp_path / "run" / "student.pth"
    # The first job stops itself before step 3, after its checkpoint of step 2.
    first, what = stopped_job(setup, out, stop_at=3)
    holder = _holder(out.parent)
    assert holder is not None and holder.pid == first.pid

    second = _job(setup, out)
    assert second.returncode == 1, second.stderr[-3000:]
    assert "RunFolderBusy" in second.stderr
    assert (
        f"run folder {out.parent} is being written by another training job "
        f"(host {socket.gethostname()}, pid {first.pid}, since {holder.since}; "
        f"lock file {out.parent / LOCK_NAME})"
    ) in second.stderr
    assert "resumed from" not in second.stderr  # it stopped before touching the checkpoint
    assert _holder(out.parent) == holder  # and left the first job's lock alone

    done = bounded.continue_stopped(first, what=what, timeout=bounded.JOB)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(ln)["step"] for ln in (out.parent / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # 2 epochs x 5 steps, each logged once, in order
    assert out.exists() and _holder(out.parent) is None


def test_sigterm_to_the_whole_job_with_loader_workers_checkpoints_then_resumes(
    setup, uninterrupted, tmp_path
):
    """SIGTERM to the job's whole process group (SLURM signals every process of a job step),
    its 2 data-loader workers included (3 threads), after 7 steps, mid-epoch 2 (5 steps an
    epoch; periodic checkpoints every 2 steps). The workers must survive it: the job writes the
    checkpoint of step 7, not only the last periodic (6) or epoch-end (5) one, ends with the
    Preempted message, and its rerun ends bit-identical to an uninterrupted run.
    """
    cut = tmp_path / "cut" / "student.pth"
    stopped = _job(setup, cut, group_term_at=7, threads=3)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "DataLoader worker" not in stopped.stderr, stopped.stderr[-3000:]
    assert "Preempted: SIGTERM received: checkpoint of step 7 written" in stopped.stderr
    assert not cut.exists()
    ckpt = load_checkpoint(cut.parent / "checkpoint.pt")
    assert (ckpt["step"], ckpt["train_config"]["workers"]) == (7, 2)

    rerun = _job(setup, cut, threads=3)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stderr and "at step 7/10" in rerun.stderr
    assert weights_sha256(cut) == weights_sha256(uninterrupted(threads=3))


def _in_process(root, out, **train):
    from robustkd.engine.jobs import distill_job

    kwargs = distill_kwargs(root, out)
    kwargs["train_cfg"] = {**kwargs["train_cfg"], **train}
    distill_job(**kwargs)
    return torch.load(out)


def test_each_seed_distils_from_its_own_teacher(setup, tmp_path):
    """With ``teachers`` (one stand-in teacher per seed), seed 1 of a two-seed job equals a job
    of seed 1 alone on teacher 1, differs from one on teacher 0, and its record hashes teacher
    1 only; a list of the wrong length is refused before any training."""
    from robustkd.engine.jobs import distill_job

    torch.manual_seed(1)
    other = create_backbone(
        {"timm_name": "vit_tiny_patch16_224", "weights": None, "kwargs": KWARGS}
    )
    teachers = [str(setup / "teacher.pth"), str(tmp_path / "teacher1.pth")]
    torch.save(other.state_dict(), teachers[1])

    def run(folder, seeds, seed_teachers):
        outs = [str(tmp_path / folder / f"seed{s}" / "student.pth") for s in seeds]
        kwargs = distill_kwargs(setup, outs[0])
        kwargs.update(seeds=seeds, outputs=outs, teachers=seed_teachers, inputs=seed_teachers)
        distill_job(**kwargs)
        return outs

    both = run("both", [0, 1], teachers)
    alone = run("alone", [1], teachers[1:])
    swapped = run("swapped", [1], teachers[:1])
    assert weights_sha256(both[1]) == weights_sha256(alone[0])
    assert weights_sha256(both[1]) != weights_sha256(swapped[0])
    record = json.loads((tmp_path / "both" / "seed1" / "provenance.json").read_text())
    assert teachers[1] in record["inputs"] and teachers[0] not in record["inputs"]
    assert record["config"]["backbone"]["weights"] == teachers[1]
    with pytest.raises(ValueError, match=r"1 teacher weights for 2 seeds \[0, 1\]"):
        run("short", [0, 1], teachers[:1])
    assert not [p for p in (tmp_path / "short").rglob("*") if p.is_file()]  # nothing written


def test_a_checkpoint_of_other_code_settings_or_data_is_not_resumed(
    setup, tmp_path, monkeypatch, caplog
):
    """A rerun (outputs removed, as Snakemake does) reuses only a checkpoint of the same run."""
    from robustkd.engine import checkpoint

    out = tmp_path / "run" / "student.pth"
    first = _in_process(setup, out)

    # Same code, settings and data: the finished checkpoint is reused, nothing retrains.
    out.unlink()
    caplog.set_level("INFO")
    again = _in_process(setup, out)
    assert "at step 10/10" in caplog.text and "ignoring" not in caplog.text
    assert all(torch.equal(first[k], again[k]) for k in first)

    # Settings that do not change the result (threads, log and checkpoint cadence): reused too.
    out.unlink()
    caplog.clear()
    _in_process(setup, out, workers=1, log_every=3, checkpoint_every=7)
    assert "at step 10/10" in caplog.text and "ignoring" not in caplog.text

    # Another learning rate: the checkpoint is ignored and the student equals a fresh run's.
    out.unlink()
    caplog.clear()
    changed = _in_process(setup, out, lr=5e-4)
    assert "other training settings; training starts afresh" in caplog.text
    fresh = _in_process(setup, tmp_path / "fresh" / "student.pth", lr=5e-4)
    assert all(torch.equal(changed[k], fresh[k]) for k in fresh)
    assert not all(torch.equal(changed[k], first[k]) for k in first)

    # Other code (the package's source digest): ignored as well.
    out.unlink()
    caplog.clear()
    monkeypatch.setattr(checkpoint, "code_digest", lambda: "0" * 64)
    _in_process(setup, out, lr=5e-4)
    assert "other code; training starts afresh" in caplog.text

    # Other data (the prepared manifest changed, by a byte): ignored.
    monkeypatch.undo()
    out.unlink()
    _in_process(setup, out, lr=5e-4)  # a checkpoint of this code again
    manifest = setup / "data" / "manifest.csv"
    original = manifest.read_bytes()
    out.unlink()
    caplog.clear()
    try:
        manifest.write_bytes(original + b"\n")
        _in_process(setup, out, lr=5e-4)
    finally:
        manifest.write_bytes(original)
    assert "other data; training starts afresh" in caplog.text
