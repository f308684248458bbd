"""A real one-node SLURM cluster: part of the demo DAG submitted with `--profile profiles/slurm`.

tests/slurm/start.sh starts munged, slurmctld and slurmd on this machine (two fake GPUs);
the run goes through sbatch (checked with `scontrol show job`, which keeps finished jobs for
MinJobAge = 300 s, and the plugin's logs) and its outputs equal those of a local run. The bare
profile name (`--profile slurm`) is resolved from a temporary XDG config folder. A training job
with data-loader workers, signalled by SLURM as when it preempts a job or its time is up, writes
the checkpoint of the step it is at and resumes from it when it runs again.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge: the test installs them with
.ci/slurm-setup when missing and skips only where that cannot work (no apt-get, not root) or
where a real cluster's /etc/slurm/slurm.conf must not be replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from robustkd.engine.checkpoint import load_checkpoint
from robustkd.engine.devices import DEVICE_ENV
from tests import bounded
from tests.test_resume import distill_kwargs, setup, weights_sha256  # noqa: F401  (setup: data)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIGS = ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
PARTITION = "rkdtest"
# Three levels of the demo DAG (status polling costs ~14 s per level), two jobs at a time on two
# cores: the miniature raw data and preparation of CIFAR-10 (packed arrays) and ImageNet-100
# (JPEG files), and the teacher (a GPU rule: it must get the profile's GPU request).
TARGETS = ["results/data/cifar10", "results/teachers/vit/seed0/model.pth"]
EXPECTED_JOBS = {
    "demo_raw_wildcards_cifar10",
    "demo_raw_wildcards_imagenet100",
    "prepare_cifar10",
    "prepare_pretrain_corpus",  # the stand-in teachers' corpus (20 classes outside ImageNet-100)
    "pretrain_backbone_wildcards_vit_0",
}
# Keys of a metrics file that measure time, not results.
TIMING_KEYS = {"images_per_s", "seconds"}
RUN_TIMEOUT = 480  # seconds; the plugin can wait forever on a job it lost track of

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


def _installed() -> bool:
    clients = all(shutil.which(c) for c in ("sbatch", "squeue", "scontrol", "sinfo", "srun"))
    daemons = all(Path("/usr/sbin", d).exists() for d in ("slurmctld", "slurmd", "munged"))
    return clients and daemons


def _ensure_slurm() -> None:
    """Install SLURM with .ci/slurm-setup if needed; skip only where that cannot work."""
    if _installed():
        return
    if os.geteuid() != 0:
        pytest.skip("SLURM is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and this machine has no apt-get to install it")
    installing = subprocess.run(
        ["bash", str(ROOT / ".ci" / "slurm-setup")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if installing.returncode != 0 or not _installed():
        out = f"{installing.stdout}\n{installing.stderr}"
        pytest.fail(f".ci/slurm-setup could not install SLURM:\n{out}")


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster; always stopped, even when a test fails."""
    _ensure_slurm()
    # One test cluster per machine at a time (it owns /etc/slurm/slurm.conf): wait for others.
    lock = open(Path(tempfile.gettempdir()) / "robustkd-slurm-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    # Short path: munge's socket lives inside and must fit in 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="rkd-slurm-", dir="/tmp"))
    try:
        start = subprocess.run(
            ["bash", str(SCRIPTS / "start.sh"), str(state), PARTITION, "2"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if start.returncode == 5:
            pytest.skip(f"not replacing this machine's SLURM config: {start.stderr.strip()}")
        assert start.returncode == 0, f"start.sh failed:\n{start.stdout}\n{start.stderr}"
        # The cluster's GPUs are fake devices (CUDA_VISIBLE_DEVICES without CUDA): the jobs,
        # which ask for GPUs, train on the CPU because this says so.
        env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), DEVICE_ENV: "cpu"}
        yield {"state": state, "env": env}
    finally:
        subprocess.run(
            ["bash", str(SCRIPTS / "stop.sh"), str(state)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(state, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config", "workflow", "envs", "tests", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    (dest / "src").symlink_to(ROOT / "src")
    return dest


def _test_overlay(path: Path, gpus: dict[str, dict[str, object]] | None = None) -> Path:
    """A second profile for this test cluster, applied after profiles/slurm.

    It holds what depends on the cluster, not on the workflow: no accounting here, so job status
    comes from squeue; status checks start after 2 s; no retries. A later profile replaces whole
    keys, so set-resources is the shipped one (GPUs kept) with CPUs, memory and time cut to what
    a 2-core test machine gives, and one thread per job (the local run uses one too, so the
    teacher's weights must come out bit-identical). ``gpus`` replaces the GPU request of some
    rules (rule -> e.g. ``{"gres": "gpu:a100:2"}``), as a user's copy of the profile does.
    """
    shipped = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    caps = {"cpus_per_task": 1, "mem_mb": 2000, "runtime": 30}
    resources = {
        rule: {k: min(v, caps[k]) if k in caps else v for k, v in res.items()}
        for rule, res in shipped["set-resources"].items()
    }
    for rule, request in (gpus or {}).items():
        resources[rule] = {k: v for k, v in resources[rule].items() if k != "gpu"} | request
    overlay = {
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "retries": 0,
        "latency-wait": 5,
        "set-threads": {rule: 1 for rule in shipped["set-threads"]},
        "set-resources": resources,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def _jobs_in(workdir: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """SLURM's record of the jobs run in `workdir`, by the plugin's comment (rule, wildcards)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    ).stdout
    jobs = {}
    records = (dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines())
    for fields in sorted(records, key=lambda f: int(f.get("JobId", 0))):
        if fields.get("WorkDir") == str(workdir):  # a job run again: its last record
            jobs[fields["Comment"].removeprefix("rule_")] = fields
    return jobs


def _snakemake(workdir: Path, *args: str, env: dict[str, str], timeout: int = RUN_TIMEOUT):
    cmd = ["timeout", "-k", "30", str(timeout), *SNAKEMAKE, *args, *CONFIGS]
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout + 60
    )


def _untimed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING_KEYS}
    return value


def _comparable(path: Path) -> object:
    if path.name == "metrics.json":
        return _untimed(json.loads(path.read_text()))
    return path.read_bytes()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """Part of the demo DAG run through SLURM with the shipped profile, and locally beside it."""
    tmp_path = tmp_path_factory.mktemp("slurm_run")
    env = slurm_cluster["env"]
    on_slurm = _copy_workflow(tmp_path / "slurm")
    local = _copy_workflow(tmp_path / "local")
    overlay = _test_overlay(tmp_path / "overlay")

    # The local reference run goes on beside the SLURM run (it is mostly waiting on SLURM).
    local_log = (tmp_path / "local.log").open("w")
    reference = subprocess.Popen(
        [*SNAKEMAKE, *TARGETS, "--cores", "1", *CONFIGS],
        cwd=local,
        stdout=local_log,
        stderr=subprocess.STDOUT,
    )
    try:
        began = time.monotonic()
        proc = _snakemake(
            on_slurm, *TARGETS, "--profile", "profiles/slurm", "--profile", str(overlay), env=env
        )
        took = time.monotonic() - began
        assert proc.returncode == 0, proc.stderr[-6000:]
        assert reference.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "local.log").read_text()
    finally:
        if reference.poll() is None:
            reference.kill()
        local_log.close()
    print(f"SLURM run of {len(EXPECTED_JOBS)} jobs: {took:.0f} s")
    return {"slurm": on_slurm, "local": local, "proc": proc, "env": env, "tmp": tmp_path}


def test_demo_dag_through_slurm_equals_local_run(slurm_run):
    on_slurm, local, proc, env = (slurm_run[k] for k in ("slurm", "local", "proc", "env"))

    # Every job went through sbatch, completed, and the GPU rule asked for its GPU.
    assert "has been submitted with SLURM jobid" in proc.stderr
    jobs = _jobs_in(on_slurm, env)
    assert set(jobs) == EXPECTED_JOBS, proc.stderr[-4000:]
    assert {j["JobState"] for j in jobs.values()} == {"COMPLETED"}
    assert {j["Partition"] for j in jobs.values()} == {PARTITION}
    assert jobs["pretrain_backbone_wildcards_vit_0"]["TresPerJob"] == "gres:gpu:1"
    assert all(j.get("TresPerJob", "(null)") == "(null)" for c, j in jobs.items() if "vit" not in c)
    for job in jobs.values():
        log = Path(job["StdOut"])
        assert log.is_relative_to(on_slurm / ".snakemake" / "slurm_logs"), log
        assert "Finished jobid" in log.read_text() or "steps (100%) done" in log.read_text()

    # Same outputs as the local run, byte for byte (provenance records times, hosts and paths;
    # metrics files record throughput).
    files = sorted(
        p.relative_to(local)
        for p in (local / "results").rglob("*")
        if p.is_file() and p.name != "provenance.json"
    )
    assert any(f.name == "manifest.csv" for f in files)
    assert any(f.name == "classes.txt" for f in files)
    assert any(f.suffix == ".npy" for f in files)
    assert Path("results/teachers/vit/seed0/model.pth") in files
    for rel in files:
        assert (on_slurm / rel).is_file(), rel
        assert _comparable(on_slurm / rel) == _comparable(local / rel), rel


def test_gres_request_is_the_only_gpu_request_and_sets_the_processes(slurm_run):
    """A profile that replaces `gpu` by `gres: "gpu:a100:2"` (README): sbatch gets only that
    request, and the training job runs 2 processes under torchrun (gloo on this CPU).

    Trains the teacher of the first run again from scratch (its inputs are there; its folder,
    checkpoint included, is removed) with such a profile.
    """
    on_slurm, env = slurm_run["slurm"], slurm_run["env"]
    overlay = _test_overlay(
        slurm_run["tmp"] / "gres", {"pretrain_backbone": {"gres": "gpu:a100:2"}}
    )
    target = "results/teachers/vit/seed0/model.pth"
    shutil.rmtree(on_slurm / "results" / "teachers" / "vit")
    args = ["--profile", "profiles/slurm", "--profile", str(overlay)]
    proc = _snakemake(on_slurm, target, *args, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    job = _jobs_in(on_slurm, env)["pretrain_backbone_wildcards_vit_0"]
    assert job["JobState"] == "COMPLETED"
    # One GPU request: --gres lands in TresPerNode, --gpus in TresPerJob.
    gpu_requests = [f"{k}={v}" for k, v in job.items() if k.startswith("TresPer") and "gpu" in v]
    assert gpu_requests == ["TresPerNode=gres:gpu:a100:2"], gpu_requests
    log = (on_slurm / "logs" / "pretrain_backbone" / "vit" / "seed0.log").read_text()
    assert "launching pretrain job on 2 processes" in log
    assert "[rank 0/2]" in log and "[rank 1/2]" in log
    # Trained to its last step on 2 ranks (step k/k of the last epoch).
    assert re.search(r"\[rank 0/2\] robustkd\.engine\.loop: epoch 2/2 step (\d+)/\1\b", log), log
    assert "resumed from" not in log
    assert (on_slurm / target).is_file()


def test_profile_by_bare_name(slurm_cluster, tmp_path):
    """`snakemake --profile slurm` finds the shipped profile linked into ~/.config/snakemake."""
    workdir = _copy_workflow(tmp_path / "work")
    config_home = tmp_path / "xdg"
    (config_home / "snakemake").mkdir(parents=True)
    # What the README tells users to do (with ~/.config as the default XDG_CONFIG_HOME).
    (config_home / "snakemake" / "slurm").symlink_to(ROOT / "profiles" / "slurm")
    assert not (workdir / "slurm").exists()
    env = {**slurm_cluster["env"], "XDG_CONFIG_HOME": str(config_home)}

    # The whole DAG as the profile would submit it: its GPU rules ask for the profile's GPUs.
    dry = _snakemake(workdir, "all", "--dry-run", "--profile", "slurm", env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert "Using profile slurm for setting default command line arguments" in dry.stderr
    requested = dict(re.findall(r"rule (\w+):\n(?:    .*\n)*?    resources: (.*)", dry.stdout))
    shipped = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = {r for r, res in shipped["set-resources"].items() if res.get("gpu")}
    assert {"distill", "pretrain_backbone"} <= set(requested) & gpu_rules, sorted(requested)
    for rule in set(requested) & gpu_rules:
        want = shipped["set-resources"][rule]
        for key in ("gpu", "cpus_per_task", "mem_mb"):
            assert f"{key}={want[key]}," in requested[rule] + ",", (rule, key)
        # The time limit is the rule's own, from the plan (robustkd.timelimit): not set here.
        assert "runtime" not in want and "runtime=" in requested[rule], rule
    assert "gpu=" not in requested["demo_raw"]

    # And one real job, submitted through sbatch with the profile found by name.
    overlay = _test_overlay(tmp_path / "overlay")
    target = "results/raw_demo/cifar100"
    proc = _snakemake(workdir, target, "--profile", "slurm", "--profile", str(overlay), env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "Using profiles slurm and" in proc.stderr
    jobs = _jobs_in(workdir, env)
    assert set(jobs) == {"demo_raw_wildcards_cifar100"}
    assert jobs["demo_raw_wildcards_cifar100"]["JobState"] == "COMPLETED"
    assert (workdir / target).is_dir()


# A training job as a workflow script runs it (the job's arguments in a JSON file).
DRIVER = """import json, sys
from robustkd.engine.jobs import distill_job
from robustkd.joblog import configure_job_logging
configure_job_logging(None)
distill_job(**json.loads(open(sys.argv[1]).read()))
"""
JOB_WAIT = 240  # seconds a test job may take to reach a state (start, a step, its end)
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL"}
ENDED |= {"OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}


def _job_record(jobid: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", jobid],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait_for(what: str, ready):
    """Poll ``ready()`` until it returns something true; fail the test after JOB_WAIT s."""
    deadline = time.monotonic() + JOB_WAIT
    while not (found := ready()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still not after {JOB_WAIT} s", pytrace=False)
        time.sleep(0.2)
    return found


def test_training_job_signalled_by_slurm_resumes_from_its_checkpoint(
    slurm_cluster,
    setup,  # noqa: F811
    tmp_path,
):
    """A distill job with 2 data-loader workers (3 threads; 160 steps) gets SIGTERM from SLURM
    once its log shows a step: `scancel --signal=TERM --full` signals every process of the job
    (the job's process and its workers), as SLURM does to a job it preempts or whose time is up.
    The job writes the checkpoint of the step it is at and fails with the Preempted message;
    submitted again (as Snakemake's `retries` resubmit a failed job), it resumes from that
    checkpoint and ends with the student of an uninterrupted run, bit for bit.

    Submitted with sbatch, not through Snakemake: Snakemake caps a job's threads at the cores
    it sees (2 on a small CI machine), and a training job has loader workers from 3 threads.
    """
    env = {**slurm_cluster["env"], "PYTHONPATH": str(ROOT / "src")}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # 160 steps of 20 ms or so: the signal comes while it trains. No periodic checkpoints.
    train = {"epochs": 8, "batch_size": 2, "log_every": 1, "checkpoint_every": 0}

    def job_args(name: str) -> Path:
        args = {**distill_kwargs(setup, tmp_path / name / "student.pth"), "threads": 3}
        args["train_cfg"] = {**args["train_cfg"], **train}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(args))
        return path

    # The uninterrupted reference runs here, beside the SLURM jobs (mostly waits on SLURM).
    uninterrupted = ThreadPoolExecutor(1).submit(
        bounded.run,
        [sys.executable, driver, job_args("whole")],
        what="uninterrupted distill job",
        timeout=bounded.JOB,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    args = job_args("job")

    def run(name: str) -> tuple[str, Path]:
        log = tmp_path / f"{name}.log"
        submit = [
            "sbatch", "--parsable", "-J", name, "-p", PARTITION, "-c", "1", "--mem", "1500",
            "-t", "10", "-o", str(log), "-D", str(tmp_path),
            f"--wrap=exec {sys.executable} {driver} {args}",
        ]  # fmt: skip
        out = subprocess.run(
            submit, capture_output=True, text=True, env=env, check=True, timeout=30
        )
        return out.stdout.strip(), log

    def text(log: Path) -> str:
        return log.read_text() if log.exists() else ""

    def ended(jobid: str) -> dict[str, str] | None:
        record = _job_record(jobid, env)
        return record if record["JobState"] in ENDED else None

    jobid, log = run("rkd-preempted")
    _wait_for("a step in the job's log", lambda: "epoch 1/8 step" in text(log) or ended(jobid))
    subprocess.run(["scancel", "--signal=TERM", "--full", jobid], env=env, check=True, timeout=30)
    record = _wait_for("the end of the signalled job", lambda: ended(jobid))
    first = text(log)
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "1:0"), first[-3000:]
    assert "DataLoader worker" not in first, first[-3000:]
    stopped = re.search(r"Preempted: SIGTERM received: checkpoint of step (\d+) written", first)
    assert stopped, first[-3000:]
    step = int(stopped[1])
    checkpoint = load_checkpoint(tmp_path / "job" / "checkpoint.pt")
    assert (checkpoint["step"], checkpoint["train_config"]["workers"]) == (step, 2)
    assert 0 < step < 160

    jobid, log = run("rkd-rerun")
    record = _wait_for("the end of the rerun", lambda: ended(jobid))
    second = text(log)
    assert record["JobState"] == "COMPLETED", second[-3000:]
    assert f"resumed from {tmp_path / 'job' / 'checkpoint.pt'} at step {step}/160" in second

    reference = uninterrupted.result()
    assert reference.returncode == 0, reference.stderr[-3000:]
    student = weights_sha256(tmp_path / "job" / "student.pth")
    assert student == weights_sha256(tmp_path / "whole" / "student.pth")
