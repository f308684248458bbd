"""The GPU check (``make gpu-check``): does the pipeline run on one NVIDIA GPU, and how fast?

One command that, on a machine with one NVIDIA GPU, 16 CPU cores and no internet, finishes in at
most 8 minutes and writes a JSON-lines record (``gpu_check.jsonl``: a header, one line per step,
a closing summary), a Markdown summary (``gpu_check.md``) and the steps' output
(``gpu_check.log``) into ``--out`` (default ``results/gpu_check/``). Every step runs in its own
process under a timeout; a failing step is recorded with its error and the check goes on. It
asserts nothing about time: the throughput goals below are reported, met or not.

The GPU machine of this workplace (the device tool) has torch, torchvision, timm, numpy, pandas,
... but neither Snakemake nor its dependencies; they travel as wheels beside the checkout
(``benchmarks/gpu_wheels.txt``, about 12 MiB; Snakemake runs with ``--scheduler greedy``, so the
ILP solver PuLP is not needed). Here, once::

    bash benchmarks/fetch_gpu_wheels.sh      # -> .whl/ (ignored by git)

then the device run, carrying ``.whl`` (timeout_s 600: the check stops itself after 480 s)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src && \
        PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

Elsewhere, with the project's environment: ``make gpu-check`` (``.venv``, out
``results/gpu_check/``). Without a usable GPU, or with ``--cpu``, the check runs its reduced CPU
mode (tiny models, a few steps, the tiny DAG as a dry run, compile skipped; at most 2 minutes on
2 cores): CI runs it (tests/test_gpu_check.py) so that the script cannot rot. The machine's torch
may be older than the project's pin (2.11 there, 2.14.1 here): the check states the version it
ran and goes on.

Steps, in order, with their time budgets and timeouts in seconds (GPU: one H100-class GPU and 16
cores; CPU: the reduced mode on 2 cores). A step's timeout is cut so that the steps after it keep
their budgets within the whole check's deadline (480 s on a GPU, 120 s on CPU):

| step | GPU: budget, timeout | CPU: budget, timeout | what |
| --- | --- | --- | --- |
| env | 5, 60 | 5, 60 | versions (python, torch, torchvision, timm, CUDA, cuDNN), driver, GPU |
| matmul_peak | 10, 60 | 3, 60 | the measured bf16 matrix-product peak (8192^3); fp16, TF32, fp32 |
| precision | 15, 90 | 5, 60 | bf16 and fp16 against fp32: multi-level loss and its gradients |
| distill | 35, 120 | 8, 60 | the real training loop: ViT-B/16 224 px distillation, batch 128 |
| finetune | 25, 90 | 6, 60 | the loop fine-tuning ViT-B/16 with a classifier head, batch 128 |
| contrastive_inversion | 25, 90 | 6, 60 | the loop on CLIP RN101 (timm resnet101_clip), batch 256 |
| evaluate | 20, 90 | 5, 60 | robustkd's evaluate_classifier on ViT-B/16, batch 256 |
| loader | 40, 120 | 8, 60 | feed rate, 7 and 15 workers, generated JPEGs: CPU and GPU decode |
| tests | 75, 150 | 15, 90 | the CUDA-only, resume and determinism tests (CPU: collected only) |
| dag | 120, 240 | 12, 90 | the tiny DAG on CUDA, each GPU job's provenance (CPU: a dry run) |
| distill_compile | 90, 180 | -, - | distill under torch.compile (GPU mode only) |

The training steps run robustkd's own loop (``robustkd.engine.loop.train``: the config's
precision, optimizer, clipping and step log) on in-memory batches of random pixels, with random
weights (``weights: null``): speed does not depend on them. Each reports images/s over its timed
steps (synchronised at both ends), FLOPs per image (``torch.utils.flop_counter``), MFU against the
measured bf16 peak, peak GPU memory (``torch.cuda.max_memory_allocated``) and host
synchronisations per step (``torch.cuda.set_sync_debug_mode("warn")`` warnings counted, and the
``cuda*Synchronize`` calls of a profiler trace), over steps after the timed ones.

Throughput goals (issue 25), checked in the summary, never asserted:

- distillation at ViT-B/16 224 px: >= 40 % MFU on an H100-class GPU (eager or compiled);
- the loader feeds >= 1.2 x the distillation step rate with the SLURM profile's CPUs per GPU
  (``profiles/slurm/config.yaml``: 8 threads, so 7 workers), by CPU or GPU decode;
- evaluation: >= 6,000 images/s.

``robustkd plan --measured results/gpu_check/gpu_check.jsonl`` plans with the measured
throughputs (each step's ``result.plan_throughput``: the figures of what the config runs).

    python benchmarks/gpu_check.py [--cpu] [--out DIR] [--only STEP ...] [--deadline S]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "gpu_check"
RECORD, SUMMARY, LOG = "gpu_check.jsonl", "gpu_check.md", "gpu_check.log"
DEADLINE = {"gpu": 480.0, "cpu": 120.0}

# Goals of issue 25 (reported in the summary, never asserted).
GOAL_MFU = 0.40
GOAL_FEED = 1.2
GOAL_EVAL = 6000.0


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    gpu: tuple[float, float]  # (budget, timeout) in seconds on a GPU
    cpu: tuple[float, float]  # the same in the reduced CPU mode; (0, 0): skipped there


STEPS = [
    Step("env", "versions, driver, GPU", (5, 60), (5, 60)),
    Step("matmul_peak", "measured matrix-product peak", (10, 60), (3, 60)),
    Step("precision", "bf16/fp16 against fp32 loss and gradients", (15, 90), (5, 60)),
    Step("distill", "training loop: distillation, eager", (35, 120), (8, 60)),
    Step("finetune", "training loop: fine-tuning", (25, 90), (6, 60)),
    Step("contrastive_inversion", "training loop: Contrastive Inversion", (25, 90), (6, 60)),
    Step("evaluate", "evaluation throughput", (20, 90), (5, 60)),
    Step("loader", "loader feed rate, CPU and GPU decode", (40, 120), (8, 60)),
    Step("tests", "CUDA-only, resume and determinism tests", (75, 150), (15, 90)),
    Step("dag", "tiny DAG on the GPU, provenance devices", (120, 240), (12, 90)),
    Step("distill_compile", "training loop: distillation, torch.compile", (90, 180), (0, 0)),
]
BY_NAME = {s.name: s for s in STEPS}


# ==============================================================================================
# The runner (no torch in this process: every step runs in a child process)
# ==============================================================================================


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder of the record and summary")
    p.add_argument("--cpu", action="store_true", help="the reduced CPU mode (also without CUDA)")
    p.add_argument("--only", nargs="+", choices=list(BY_NAME), help="run only these steps")
    p.add_argument("--deadline", type=float, default=None, help="seconds for the whole check")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    # A child process: run one step, write its result.
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("gpu", "cpu"), help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.step:
        return child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (RECORD, SUMMARY, LOG):
        (out / name).unlink(missing_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    mode = "cpu" if args.cpu else "gpu"
    started = time.monotonic()
    header = {
        "kind": "header",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "mode": mode,
        "budgets": {s.name: {"gpu": s.gpu, "cpu": s.cpu} for s in STEPS},
    }
    entries: list[dict] = []
    try:
        env = run_step(BY_NAME["env"], mode, out, scratch, started + 60, 60)
        env["budget_s"] = BY_NAME["env"].gpu[0]
        cuda = (env.get("result") or {}).get("cuda") or {}
        if mode == "gpu" and not cuda.get("usable"):
            mode = "cpu"
            header["mode_note"] = (
                f"no usable CUDA ({cuda.get('reason') or 'torch.cuda.is_available() is False'})"
                ": ran the reduced CPU mode"
            )
        header["mode"] = mode
        header["device"] = describe_device(env.get("result") or {})
        deadline = started + (args.deadline or DEADLINE[mode])
        header["deadline_s"] = deadline - started
        write_line(out / RECORD, header)
        write_line(out / RECORD, env)
        entries.append(env)
        write_summary(out, header, entries, None)
        todo = [s for s in STEPS[1:] if not args.only or s.name in args.only]
        for i, step in enumerate(todo):
            budget, timeout = step.gpu if mode == "gpu" else step.cpu
            if timeout <= 0:
                entry = {"kind": "step", "step": step.name, "status": "skipped"}
                entry["error"] = f"not run in the {mode} mode"
            else:
                later = sum((s.gpu if mode == "gpu" else s.cpu)[0] for s in todo[i + 1 :])
                left = deadline - time.monotonic()
                cut = min(timeout, max(budget, left - later), left)
                if cut < min(budget, 5):
                    entry = {"kind": "step", "step": step.name, "status": "skipped"}
                    entry["error"] = f"out of time: {left:.0f} s left of the check's deadline"
                else:
                    entry = run_step(step, mode, out, scratch, time.monotonic() + cut, cut)
            entry["budget_s"] = budget
            write_line(out / RECORD, entry)
            entries.append(entry)
            write_summary(out, header, entries, None)
        total = time.monotonic() - started
        summary = summarise(header, entries, total)
        write_line(out / RECORD, summary)
        text = write_summary(out, header, entries, summary)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(text)
    print(f"record: {out / RECORD}\nsummary: {out / SUMMARY}\nlog: {out / LOG}")
    bad = [e["step"] for e in entries if e["status"] in ("failed", "timeout")]
    return 1 if bad else 0


def write_line(path: Path, entry: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def run_step(step: Step, mode: str, out: Path, scratch: Path, until: float, timeout: float):
    """Run one step in a child process under ``timeout``; return its record entry."""
    result = scratch / f"{step.name}.result.json"
    cmd = [sys.executable, __file__, "--step", step.name, "--mode", mode, "--out", str(out)]
    cmd += ["--scratch", str(scratch), "--result", str(result), "--until", str(until)]
    tag = f"{os.getpid()}-{step.name}-{time.time_ns()}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", GPU_CHECK_TAG=tag)
    import resource

    t0, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"gpu_check: {step.name} ({mode} mode, timeout {timeout:.0f} s) ...", flush=True)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # its loader workers and Snakemake's jobs go with it
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        kill_group(proc)
        output, _ = proc.communicate()
        status = "timeout"
    reaped = reap(tag)
    seconds = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    with open(out / LOG, "a") as f:
        f.write(f"\n===== {step.name}: {status} in {seconds:.1f} s =====\n")
        f.write(output[-200_000:])
    entry: dict = {"kind": "step", "step": step.name, "status": status}
    entry["seconds"] = round(seconds, 2)
    entry["cpu_s"] = round(cpu_s, 2)  # of its processes: the wall time on a busy machine is more
    entry["timeout_s"] = round(timeout, 1)
    if result.is_file():
        entry["result"] = json.loads(result.read_text())
    if reaped:
        entry["reaped"] = reaped  # processes it left running (their own sessions), killed
    if status == "timeout":
        entry["error"] = f"killed after {timeout:.0f} s (its timeout)"
    elif status == "failed":
        entry["error"] = last_error(output) or f"exit status {proc.returncode}"
    print(f"gpu_check: {step.name}: {status} in {seconds:.1f} s", flush=True)
    return entry


def kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(tag: str) -> int:
    """Kill what a step left running: processes whose environment holds its ``GPU_CHECK_TAG``.

    A step's test and Snakemake subprocesses start sessions of their own, so killing the step's
    process group can leave them running into the next step (Linux: read from /proc).
    """
    import signal

    mark = f"GPU_CHECK_TAG={tag}".encode()
    killed = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue  # gone, or not ours to read
    return killed


def last_error(output: str) -> str:
    """The exception line of a traceback in ``output`` (and the line before it), or its end."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", lines[i]):
            return "\n".join(lines[i : i + 3])[:2000]
    return "\n".join(lines[-5:])[-2000:]


def describe_device(env: dict) -> str:
    cuda = env.get("cuda") or {}
    if cuda.get("usable"):
        smi = env.get("nvidia_smi") or {}
        driver = f", driver {smi['driver']}" if smi.get("driver") else ""
        return f"{cuda.get('name')} ({cuda.get('memory_gib')} GiB{driver})"
    return f"CPU: {env.get('cpu', {}).get('model', '?')} ({env.get('cpu', {}).get('cores')} cores)"


# ----------------------------------------------------------------------------------------------
# The summary
# ----------------------------------------------------------------------------------------------


def _result(entries: list[dict], name: str) -> dict:
    for e in entries:
        if e["step"] == name and e["status"] == "ok":
            return e.get("result") or {}
    return {}


def _mfu(res: dict, peak: float | None) -> float | None:
    if not res.get("img_per_s") or not res.get("flops_per_image") or not peak:
        return None
    return res["img_per_s"] * res["flops_per_image"] / (peak * 1e12)


def summarise(header: dict, entries: list[dict], total: float) -> dict:
    """The closing line: MFU of each measured workload, the goals, the plan's throughputs."""
    peak = _result(entries, "matmul_peak").get("peak_bf16_tflops")
    gpu = header["mode"] == "gpu"
    mfu = {}
    for name in ("distill", "distill_compile", "finetune", "contrastive_inversion", "evaluate"):
        value = _mfu(_result(entries, name), peak)
        if value is not None:
            mfu[name] = round(value, 4)
    rates = {
        name: _result(entries, name).get("img_per_s")
        for name in ("distill", "distill_compile")
        if _result(entries, name).get("img_per_s")
    }
    goals = []
    best = max(mfu.get("distill", 0), mfu.get("distill_compile", 0)) or None
    goals.append(
        goal(
            "distillation MFU, ViT-B/16 224 px (eager or compiled)",
            f">= {GOAL_MFU:.0%} of the measured bf16 peak on an H100-class GPU",
            None if best is None else f"{best:.1%}",
            None if best is None or not gpu else best >= GOAL_MFU,
            gpu,
        )
    )
    loader = _result(entries, "loader")
    step_rate = max(rates.values()) if rates else None
    workers = loader.get("slurm_workers")
    feeds = [
        v
        for k, v in (loader.get("img_per_s") or {}).items()
        if v and workers is not None and k.endswith(f"@{workers}")
    ]
    feed = max(feeds) if feeds else None
    ratio = feed / step_rate if feed and step_rate else None
    goals.append(
        goal(
            "loader feed with the SLURM profile's CPUs per GPU "
            f"({workers if workers is not None else 'threads - 1'} workers)",
            f">= {GOAL_FEED}x the distillation step rate",
            None if ratio is None else f"{ratio:.2f}x ({feed:,.0f} / {step_rate:,.0f} img/s)",
            None if ratio is None or not gpu else ratio >= GOAL_FEED,
            gpu,
        )
    )
    ev = _result(entries, "evaluate").get("img_per_s")
    goals.append(
        goal(
            "evaluation throughput, ViT-B/16 224 px",
            f">= {GOAL_EVAL:,.0f} img/s",
            None if ev is None else f"{ev:,.0f} img/s",
            None if ev is None or not gpu else ev >= GOAL_EVAL,
            gpu,
        )
    )
    plan = {}
    for e in entries:
        if e["status"] == "ok":
            plan.update((e.get("result") or {}).get("plan_throughput") or {})
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    return {
        "kind": "summary",
        "mode": header["mode"],
        "device": header.get("device"),
        "total_s": round(total, 1),
        "deadline_s": header.get("deadline_s"),
        "steps": counts,
        "peak_bf16_tflops": peak,
        "mfu": mfu,
        "goals": goals,
        "plan_throughput": plan,
    }


def goal(name: str, target: str, measured: str | None, met: bool | None, gpu: bool) -> dict:
    if measured is None:
        verdict = "not measured"
    elif not gpu:
        verdict = "not applicable (CPU mode)"
    else:
        verdict = "met" if met else "NOT met"
    return {"goal": name, "target": target, "measured": measured, "verdict": verdict}


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def step_line(entry: dict) -> str:
    """A step's main figures, one line."""
    r = entry.get("result") or {}
    name = entry["step"]
    if entry["status"] not in ("ok",) and not r:
        return (entry.get("error") or "").splitlines()[0][:160] if entry.get("error") else ""
    if name == "env":
        cuda = r.get("cuda") or {}
        v = r.get("versions") or {}
        parts = [f"torch {v.get('torch')}", f"torchvision {v.get('torchvision')}"]
        parts += [f"timm {v.get('timm')}", f"python {v.get('python')}"]
        if cuda.get("usable"):
            parts += [f"CUDA {cuda.get('cuda')}", f"cuDNN {cuda.get('cudnn')}", cuda.get("name")]
        else:
            parts.append(f"no CUDA ({cuda.get('reason')})")
        return ", ".join(str(p) for p in parts)
    if name == "matmul_peak":
        t = r.get("tflops") or {}
        return ", ".join(f"{k} {fmt(v, 1)} TFLOP/s" for k, v in t.items()) + (
            f" (n = {r.get('n')})"
        )
    if name == "precision":
        out = []
        for p in ("bf16", "fp16"):
            d = (r.get("against_fp32") or {}).get(p) or {}
            if d:
                out.append(
                    f"{p}: loss rel. err {fmt(d.get('loss_rel_err'), 5)}, attention "
                    f"{fmt(d.get('attention_rel_err'), 5)}, grad rel. err "
                    f"{fmt(d.get('grad_rel_err'), 4)}"
                )
        return "; ".join(out)
    if name in ("distill", "distill_compile", "finetune", "contrastive_inversion"):
        return (
            f"{fmt(r.get('img_per_s'))} img/s ({r.get('model')}, batch {r.get('batch')}, "
            f"{r.get('precision')}), {r.get('gflops_per_image', 0):.4g} GFLOP/img, peak "
            f"{fmt(r.get('peak_memory_gib'), 1)} GiB, host syncs/step "
            f"{fmt(r.get('syncs_per_step'), 1)} (profiler {fmt(r.get('sync_calls_per_step'), 1)})"
        )
    if name == "evaluate":
        return (
            f"{fmt(r.get('img_per_s'))} img/s per job call ({r.get('repeats')} repeats), "
            f"{fmt(r.get('forward_img_per_s'))} img/s per extra repeat ({r.get('model')}, batch "
            f"{r.get('batch')}), host syncs/batch {fmt(r.get('syncs_per_batch'), 1)}"
        )
    if name == "loader":
        rates = r.get("img_per_s") or {}
        return ", ".join(f"{k} {fmt(v)} img/s" for k, v in rates.items())
    if name == "tests":
        if r.get("collected_only"):
            return f"{r.get('selected')} tests selected (collected only)"
        return (
            f"{r.get('passed')} passed, {r.get('failed')} failed, {r.get('errors')} errors, "
            f"{r.get('skipped')} skipped of {r.get('selected')}"
        )
    if name == "dag":
        if r.get("dry_run"):
            return f"dry run: {r.get('jobs')} jobs"
        return (
            f"{'ok' if r.get('returncode') == 0 else 'FAILED'}: {r.get('jobs_done')} jobs done; "
            f"GPU jobs on cuda: {r.get('gpu_records_on_cuda')} of {r.get('gpu_records')}"
        )
    return ""


def write_summary(out: Path, header: dict, entries: list[dict], summary: dict | None) -> str:
    lines = [f"# GPU check ({header['mode']} mode)", ""]
    lines.append(f"- started {header['started']}; device: {header.get('device')}")
    if header.get("mode_note"):
        lines.append(f"- **{header['mode_note']}**")
    env = _result(entries, "env")
    if env:
        v = env.get("versions") or {}
        pin = env.get("torch_pin") or {}
        lines.append(
            f"- torch {v.get('torch')} ({pin.get('note', '')}), torchvision "
            f"{v.get('torchvision')}, timm {v.get('timm')}, snakemake {v.get('snakemake')}, "
            f"python {v.get('python')}"
        )
        cuda = env.get("cuda") or {}
        smi = env.get("nvidia_smi") or {}
        if cuda.get("usable"):
            lines.append(
                f"- CUDA {cuda.get('cuda')}, cuDNN {cuda.get('cudnn')}, driver "
                f"{smi.get('driver', '?')}; {cuda.get('name')}, {cuda.get('memory_gib')} GiB, "
                f"{cuda.get('sm_count')} SMs, capability {cuda.get('capability')}"
            )
        cpu = env.get("cpu") or {}
        lines.append(f"- CPU: {cpu.get('model')}, {cpu.get('cores')} cores")
    if summary is not None:
        lines.append(
            f"- total {summary['total_s']:.0f} s of the {summary.get('deadline_s') or 0:.0f} s "
            f"deadline; steps: {summary['steps']}"
        )
        lines += ["", "## Goals (reported, not asserted)", ""]
        lines += ["| goal | target | measured | verdict |", "| --- | --- | --- | --- |"]
        for g in summary["goals"]:
            lines.append(
                f"| {g['goal']} | {g['target']} | {g['measured'] or '-'} | {g['verdict']} |"
            )
        if summary.get("mfu"):
            peak = summary.get("peak_bf16_tflops")
            lines += ["", f"MFU against the measured bf16 peak ({fmt(peak, 1)} TFLOP/s): "]
            lines[-1] += ", ".join(f"{k} {v:.1%}" for k, v in summary["mfu"].items())
        if summary.get("plan_throughput"):
            plan = summary["plan_throughput"]
            lines += ["", "Measured throughputs for `robustkd plan --measured`: "]
            lines[-1] += ", ".join(f"{k} {v:,.0f} img/s" for k, v in plan.items())
    lines += ["", "## Steps", ""]
    lines += ["| step | status | s | CPU s | budget s | result |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        text = step_line(e).replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {e['step']} | {e['status']} | {fmt(e.get('seconds'), 1)} | "
            f"{fmt(e.get('cpu_s'), 1)} | {fmt(e.get('budget_s'))} | {text} |"
        )
    problems = [e for e in entries if e.get("error") and e["status"] != "skipped"]
    problems += [e for e in entries if (e.get("result") or {}).get("problems")]
    if problems:
        lines += ["", "## Problems", ""]
        for e in problems:
            if e.get("error") and e["status"] != "skipped":
                lines.append(f"- {e['step']} ({e['status']}):")
                lines += ["", "  ```", *("  " + ln for ln in e["error"].splitlines()), "  ```"]
            for p in (e.get("result") or {}).get("problems") or []:
                lines.append(f"- {e['step']}: {p}")
    text = "\n".join(lines) + "\n"
    (out / SUMMARY).write_text(text)
    return text


# ==============================================================================================
# The steps (each in a child process)
# ==============================================================================================


def child(args: argparse.Namespace) -> int:
    step = globals()[f"step_{args.step}"]
    if args.mode == "cpu":
        import torch

        # One thread: the reduced mode measures nothing worth a second core, and torch's
        # threads waiting on each other on a busy 2-core machine made steps 50x slower.
        torch.set_num_threads(1)
    ctx = Context(args.mode, Path(args.scratch), Path(args.out), args.until)
    result = step(ctx)
    tmp = Path(args.result + ".tmp")
    tmp.write_text(json.dumps(result, default=str, indent=1))
    tmp.replace(args.result)
    return 0


@dataclass
class Context:
    mode: str  # "gpu" or "cpu"
    scratch: Path
    out: Path
    until: float  # monotonic time at which this step is killed

    @property
    def gpu(self) -> bool:
        return self.mode == "gpu"

    def left(self) -> float:
        return self.until - time.monotonic()


def load_configs(mode: str) -> dict:
    """The paper config (GPU mode) or the miniature's (CPU mode), merged and validated."""
    from robustkd.config import load_config

    overlays = [] if mode == "gpu" else [ROOT / "config" / "demo.yaml"]
    return load_config(ROOT / "config" / "config.yaml", *overlays)


def backbone_spec(config: dict, name: str, mode: str) -> dict:
    """A backbone entry with random weights: the paper's architecture, or the miniature's."""
    spec = {k: v for k, v in config["backbones"][name].items() if k != "pretrain"}
    spec["weights"] = None
    if mode == "gpu":
        spec["timm_name"] = spec["timm_name"].split(".")[0]  # the architecture, not a tag
    return spec


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_of(ctx: Context):
    import torch

    return torch.device("cuda" if ctx.gpu else "cpu")


# ----------------------------------------------------------------------------------------------
# env, matmul_peak
# ----------------------------------------------------------------------------------------------


def step_env(ctx: Context) -> dict:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "snakemake", "numpy", "pillow", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    versions["torch"] = torch.__version__
    pin = re.search(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text())
    pinned = pin.group(1) if pin else None
    base = torch.__version__.split("+")[0]
    note = (
        f"the project's pin {pinned}"
        if base == pinned
        else f"the project pins {pinned}: this one differs, tolerated and stated"
    )
    cuda: dict = {"available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    try:
        torch.cuda.init()
        torch.zeros(1, device="cuda").add_(1)
        props = torch.cuda.get_device_properties(0)
        cuda.update(
            usable=True,
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            sm_count=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            device_count=torch.cuda.device_count(),
            bf16=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
        )
    except Exception as exc:  # noqa: BLE001 - the reason goes into the record
        cuda.update(usable=False, reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    smi = None
    if shutil.which("nvidia-smi"):
        q = "name,driver_version,memory.total,power.limit,clocks.max.sm,pcie.link.gen.max"
        try:
            res = subprocess.run(
                ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            top = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
            lines = res.stdout.splitlines()
            fields = [f.strip() for f in lines[0].split(",")] if lines else []
            smi = dict(zip(q.split(","), fields, strict=False))
            smi["driver"] = smi.get("driver_version")
            m = re.search(r"CUDA Version:\s*([\d.]+)", top.stdout)
            smi["driver_cuda"] = m.group(1) if m else None
        except (OSError, subprocess.SubprocessError) as exc:
            smi = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        kb = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem = round(int(kb.group(1)) / 2**20, 1) if kb else None
    except OSError:
        pass
    try:  # the copy of the checkout on a GPU machine may have no .git, the machine no git
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "versions": versions,
        "torch_pin": {"pinned": pinned, "running": torch.__version__, "note": note},
        "cuda": cuda,
        "nvidia_smi": smi,
        "cpu": {"model": cpu_model, "cores": len(os.sched_getaffinity(0)), "memory_gib": mem},
        "commit": commit or None,
        "threads": torch.get_num_threads(),
    }


def step_matmul_peak(ctx: Context) -> dict:
    import torch

    device = device_of(ctx)
    out: dict = {"tflops": {}}
    n = 8192 if ctx.gpu else 512
    out["n"] = n
    kinds = [("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)]
    kinds += [("tf32", torch.float32, True), ("fp32", torch.float32, False)]
    from robustkd.engine.accel import apply_tf32, restore_tf32

    saved = apply_tf32(False)  # the API training and evaluation use (torch 2.9+ refuse a mix)
    for name, dtype, tf32 in kinds:
        apply_tf32(tf32)
        size = n if dtype != torch.float32 or tf32 or not ctx.gpu else n // 2
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        reps = 10 if ctx.gpu else 3
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        seconds = time.perf_counter() - t0
        # 4 significant digits: a CPU's bf16 product (AVX2 kernels) is well below 0.01 TFLOP/s.
        out["tflops"][name] = float(f"{2 * size**3 * reps / seconds / 1e12:.4g}")
        del a, b
    restore_tf32(saved)
    out["peak_bf16_tflops"] = out["tflops"]["bf16"]
    return out


# ----------------------------------------------------------------------------------------------
# precision: bf16 and fp16 against fp32
# ----------------------------------------------------------------------------------------------


def step_precision(ctx: Context) -> dict:
    """The multi-level loss and its gradients under autocast, against fp32 (TF32 off)."""
    import torch

    from robustkd.distortions import create_distortion, seeded_generator
    from robustkd.engine.distill import DistillTask
    from robustkd.engine.inputs import input_view
    from robustkd.losses import create_multilevel_loss, needs_attention
    from robustkd.models import copy_student, create_backbone, freeze

    device = device_of(ctx)
    config = load_configs(ctx.mode)
    spec = backbone_spec(config, "vit", ctx.mode)
    torch.manual_seed(0)
    teacher = freeze(create_backbone(spec)).to(device)
    student = copy_student(teacher)
    _, normalize = input_view(config.get("views", {}), spec)
    normalize = normalize.to(device)
    task = DistillTask(
        teacher,
        student,
        create_multilevel_loss("ours", config["loss"]),
        create_distortion({"family": "mask", "p": 0.9}),
        normalize,
        with_attention=needs_attention("ours"),
    )
    size = int(spec.get("kwargs", {}).get("img_size", 224))
    batch = 32 if ctx.gpu else 8
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    params = [p for p in student.parameters() if p.requires_grad]
    from robustkd.engine.accel import apply_tf32

    apply_tf32(False)  # plain float32 reference, through the API the pipeline uses

    def run(dtype):
        autocast = (
            torch.autocast(device.type, dtype=dtype)
            if dtype is not None
            else torch.autocast(device.type, enabled=False)
        )
        with autocast:
            losses = task.loss(images, labels, seeded_generator(device, 0, 0, 0))
        values = {k: float(v.detach()) for k, v in losses.items()}
        grads = {}
        names = [k for k in losses if k != "loss"] + ["loss"]
        scale = 2.0**12 if dtype == torch.float16 else 1.0  # as GradScaler would
        for i, name in enumerate(names):
            if not losses[name].requires_grad:
                continue
            g = torch.autograd.grad(
                losses[name] * scale, params, retain_graph=i < len(names) - 1, allow_unused=True
            )
            flat = [
                (x if x is not None else torch.zeros_like(p)).float().flatten() / scale
                for x, p in zip(g, params, strict=True)
            ]
            grads[name] = torch.cat(flat)
        return values, grads

    ref_values, ref_grads = run(None)
    out: dict = {"model": spec["timm_name"], "batch": batch, "img": size}
    out["fp32"] = ref_values
    out["against_fp32"] = {}
    kinds = [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    for name, dtype in kinds:
        try:
            values, grads = run(dtype)
        except Exception as exc:  # noqa: BLE001 - fp16 autocast is missing on some CPUs
            out["against_fp32"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        d: dict = {"values": values}
        for k, v in values.items():
            ref = ref_values[k]
            d[f"{k}_rel_err"] = abs(v - ref) / max(abs(ref), 1e-12)
        for k, g in grads.items():
            ref = ref_grads[k]
            err = float((g - ref).norm() / ref.norm().clamp_min(1e-30))
            cos = float(torch.nn.functional.cosine_similarity(g, ref, dim=0))
            key = "grad" if k == "loss" else f"grad_{k}"
            d[f"{key}_rel_err"], d[f"{key}_cos"] = err, cos
        out["against_fp32"][name] = d
    # Blur under autocast (its matrix products) against fp32: the training/evaluation mismatch.
    blur = create_distortion({"family": "blur", "kernel": 9, "sigma": 1.3})
    ref = blur(images, seeded_generator(device, 0, 0, 0))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = blur(images, seeded_generator(device, 0, 0, 0))
    out["blur_bf16_autocast"] = {
        "dtype": str(low.dtype),
        "max_abs_diff": float((low.float() - ref.float()).abs().max()),
    }
    problems = []
    for name, d in out["against_fp32"].items():
        if d.get("loss_rel_err", 0) > 0.01:
            problems.append(f"{name} moves the loss by {d['loss_rel_err']:.2%} against fp32")
        if d.get("grad_rel_err", 0) > 0.05:
            problems.append(f"{name} gradient differs by {d['grad_rel_err']:.1%} (L2) from fp32")
    out["problems"] = problems
    return out


# ----------------------------------------------------------------------------------------------
# The training loop's throughput (distill, distill_compile, finetune, contrastive_inversion)
# ----------------------------------------------------------------------------------------------


class RandomImages:
    """A training or evaluation set of random uint8 images (3, S, S), from a small pool.

    Indexed like robustkd's ImageSet (``(epoch, index)`` keys or an index), with a fixed
    fingerprint, so robustkd's loop and evaluation take it as they take an ImageSet.
    """

    def __init__(self, n: int, size: int, classes: int, pool: int = 64) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.n, self.classes = n, classes
        self.pool = torch.randint(0, 256, (pool, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        i = key[1] if isinstance(key, tuple) else key
        return self.pool[i % len(self.pool)], self.labels[i]

    def fingerprint(self) -> str:
        return f"random-{self.n}-{tuple(self.pool.shape)}"


def make_task(kind: str, config: dict, mode: str, device):
    """The task of a training kind, built from robustkd's pieces as its job builds it."""
    import torch

    from robustkd.distortions import create_distortion
    from robustkd.engine.distill import ContrastiveInversionTask, DistillTask
    from robustkd.engine.finetune import Classifier, FinetuneTask
    from robustkd.engine.inputs import input_view
    from robustkd.losses import create_multilevel_loss, needs_attention
    from robustkd.models import copy_student, create_backbone, freeze

    torch.manual_seed(0)
    distortion = create_distortion({"family": "mask", "p": 0.9})
    views = config.get("views", {})
    if kind == "contrastive_inversion":
        spec = backbone_spec(config, "clip", mode)
        try:
            teacher = create_backbone(spec)
        except Exception:  # noqa: BLE001 - an older timm: the plain ResNet-101
            spec["timm_name"] = "resnet101"
            teacher = create_backbone(spec)
        teacher = freeze(teacher).to(device)
        student = copy_student(teacher)
        _, normalize = input_view(views, spec)
        task = ContrastiveInversionTask(
            teacher,
            student,
            distortion,
            normalize.to(device),
            tau=float(config["ci_loss"]["tau"]),
        )
        section, classes = "contrastive_inversion", 1
    elif kind == "finetune":
        spec = backbone_spec(config, "vit", mode)
        model = Classifier(create_backbone(spec), 100).to(device)
        _, normalize = input_view(views, spec)
        task = FinetuneTask(model, distortion, normalize.to(device))
        section, classes = "finetune", 100
    else:
        spec = backbone_spec(config, "vit", mode)
        teacher = freeze(create_backbone(spec)).to(device)
        student = copy_student(teacher)
        _, normalize = input_view(views, spec)
        task = DistillTask(
            teacher,
            student,
            create_multilevel_loss("ours", config["loss"]),
            distortion,
            normalize.to(device),
            with_attention=needs_attention("ours"),
        )
        section, classes = "distill", 1
    from robustkd.models import backbone_input_config

    size = int(backbone_input_config(spec)["input_size"][-1])
    return task, spec, section, classes, size


def make_clock(task, device, warmup: int, timed: int, probe: int):
    """A task whose loss times steps ``warmup .. warmup + timed`` and probes syncs after them.

    Its bookkeeping runs outside torch.compile (``torch.compiler.disable``); at both ends of the
    timed window it synchronises the device (those two syncs are not counted).
    """
    import warnings

    import torch

    class Clock:
        def __init__(self) -> None:
            self.inner, self.model = task, task.model
            self.calls, self.t0, self.t1 = 0, None, None
            self.sync_warnings: list[str] = []
            self.sync_calls: int | None = None
            self._catch = None
            self._prof = None

        def __getattr__(self, name):  # e.g. a mixed distortion's draw counts
            return getattr(self.__dict__["inner"], name)

        def loss(self, images, labels, generator):
            self.tick()
            return self.inner.loss(images, labels, generator)

        @torch.compiler.disable
        def tick(self) -> None:
            n, self.calls = self.calls, self.calls + 1
            if n == warmup:
                sync(device)
                self.t0 = time.perf_counter()
            elif n == warmup + timed:
                sync(device)
                self.t1 = time.perf_counter()
                if device.type == "cuda":
                    self.start_probe()
            elif n == warmup + timed + probe and device.type == "cuda":
                self.stop_probe()

        def start_probe(self) -> None:
            try:
                from torch.profiler import ProfilerActivity, profile

                self._prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self._prof.start()
            except Exception:  # noqa: BLE001 - the warning count still says it
                self._prof = None
            self._catch = warnings.catch_warnings(record=True)
            self._records = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

        def stop_probe(self) -> None:
            torch.cuda.set_sync_debug_mode(0)
            if self._catch is not None:
                self.sync_warnings = [
                    str(w.message) for w in self._records if "synchroniz" in str(w.message)
                ]
                self._catch.__exit__(None, None, None)
            if self._prof is not None:
                try:
                    self._prof.stop()
                    events = self._prof.key_averages()
                    self.sync_calls = sum(
                        e.count for e in events if re.match(r"cuda\w*Synchronize$", e.key)
                    )
                except Exception:  # noqa: BLE001
                    self.sync_calls = None

    return Clock()


def train_throughput(ctx: Context, kind: str, compile_: bool) -> dict:
    import dataclasses

    import torch

    from robustkd.engine.loop import train
    from robustkd.engine.optim import TrainConfig

    device = device_of(ctx)
    config = load_configs(ctx.mode)
    task, spec, section, classes, size = make_task(kind, config, ctx.mode, device)
    base = TrainConfig.from_config(config["training"][section])
    batch = base.batch_size if ctx.gpu else 8
    if ctx.gpu:
        warmup, timed, probe = (8 if compile_ else 5), 20, 3
    else:
        warmup, timed, probe = 1, 3, 1
    cfg = dataclasses.replace(
        base,
        epochs=1,
        batch_size=batch,
        workers=4 if ctx.gpu else 1,
        checkpoint_every=0,
        compile=compile_,
    )
    steps = warmup + timed + probe + 1
    data = RandomImages(batch * steps, size, classes)

    # FLOPs of one image's step: the loss's forward passes and the backward pass.
    from torch.utils.flop_counter import FlopCounterMode

    from robustkd.distortions import seeded_generator

    x = torch.rand(2, 3, size, size, device=device)
    y = torch.zeros(2, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        task.loss(x, y, seeded_generator(device, 0, 0, 0))["loss"].backward()
    flops = counter.get_total_flops() / 2
    task.model.zero_grad(set_to_none=True)

    clock = make_clock(task, device, warmup, timed, probe)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run_dir = ctx.scratch / f"run_{kind}{'_compiled' if compile_ else ''}"
    t_start = time.perf_counter()
    summary = train(clock, data, cfg, seed=0, run_dir=run_dir, device=device)
    wall = time.perf_counter() - t_start
    shutil.rmtree(run_dir, ignore_errors=True)
    seconds = clock.t1 - clock.t0
    rate = batch * timed / seconds
    n_params = sum(p.numel() for p in task.model.parameters()) / 1e6
    precision = cfg.amp_dtype if (cfg.amp and device.type == "cuda") else "float32"
    out = {
        "device": describe_torch_device(device),
        "model": spec["timm_name"],
        "params_m": round(n_params, 2),
        "img": size,
        "batch": batch,
        "precision": precision,
        "compile": compile_,
        "optimizer": cfg.optimizer,
        "steps": {"warmup": warmup, "timed": timed, "probed": probe},
        "img_per_s": round(rate, 1),
        "step_ms": round(1e3 * seconds / timed, 2),
        "flops_per_image": flops,
        "gflops_per_image": round(flops / 1e9, 2),
        "achieved_tflops": round(rate * flops / 1e12, 2),
        "loop_img_per_s": round(summary["images_per_s"], 1),
        "loop_seconds": round(wall, 1),
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        out["syncs_per_step"] = len(clock.sync_warnings) / probe
        kinds = sorted({w.split("\n")[0][:160] for w in clock.sync_warnings})
        out["sync_warnings"] = kinds[:5]
        if clock.sync_calls is not None:
            out["sync_calls_per_step"] = clock.sync_calls / probe
    else:
        out["syncs_per_step"] = None  # a CUDA notion: set_sync_debug_mode needs CUDA
    # What `robustkd plan --measured` takes: the figure of what the config runs.
    if compile_ == base.compile:
        rules = {
            "distill": ["distill"],
            "finetune": ["finetune", "finetune_fractions", "transfer"],
            "contrastive_inversion": ["distill_ci"],
        }[kind]
        out["plan_throughput"] = dict.fromkeys(rules, out["img_per_s"])
    return out


def describe_torch_device(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def step_distill(ctx: Context) -> dict:
    return train_throughput(ctx, "distill", compile_=False)


def step_distill_compile(ctx: Context) -> dict:
    return train_throughput(ctx, "distill", compile_=True)


def step_finetune(ctx: Context) -> dict:
    return train_throughput(ctx, "finetune", compile_=False)


def step_contrastive_inversion(ctx: Context) -> dict:
    return train_throughput(ctx, "contrastive_inversion", compile_=False)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------


def step_evaluate(ctx: Context) -> dict:
    """robustkd's evaluate_classifier on random images: one call per job, images/s."""
    import warnings

    import torch

    from robustkd.distortions import create_distortion
    from robustkd.engine.evaluate import evaluate_classifier
    from robustkd.engine.finetune import Classifier
    from robustkd.engine.inputs import input_view
    from robustkd.models import backbone_input_config, create_backbone

    device = device_of(ctx)
    config = load_configs(ctx.mode)
    spec = backbone_spec(config, "vit", ctx.mode)
    size = int(backbone_input_config(spec)["input_size"][-1])
    torch.manual_seed(0)
    model = Classifier(create_backbone(spec), 100).to(device)
    _, normalize = input_view(config.get("views", {}), spec)
    normalize = normalize.to(device)
    batch = int(config["evaluation"]["batch_size"]) if ctx.gpu else 32
    n = batch * (24 if ctx.gpu else 2)
    repeats = 3
    distortion = create_distortion({"family": "mask", "p": 0.9})
    workers = 4 if ctx.gpu else 1

    def call(dataset, r):
        sync(device)
        t0 = time.perf_counter()
        evaluate_classifier(
            model,
            dataset,
            distortion,
            normalize,
            repeats=r,
            seed=0,
            batch_size=batch,
            device=device,
            workers=workers,
        )
        sync(device)
        return time.perf_counter() - t0

    call(RandomImages(batch * 2, size, 100), 1)  # warm-up: kernels, loader
    data = RandomImages(n, size, 100)
    one = call(data, 1)
    many = call(data, repeats)
    out = {
        "device": describe_torch_device(device),
        "model": spec["timm_name"],
        "img": size,
        "batch": batch,
        "images": n,
        "repeats": repeats,
        "img_per_s": round(n * repeats / many, 1),
        "forward_img_per_s": round(n * (repeats - 1) / max(many - one, 1e-9), 1),
        "flops_per_image": None,
    }
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(normalize(torch.rand(2, 3, size, size, device=device)))
    out["flops_per_image"] = counter.get_total_flops() / 2
    if device.type == "cuda":
        small = RandomImages(batch * 4, size, 100)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                call(small, 1)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = [w for w in seen if "synchroniz" in str(w.message)]
        out["syncs_per_batch"] = len(syncs) / 4
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    out["plan_throughput"] = {"evaluate": out["img_per_s"]}
    return out


# ----------------------------------------------------------------------------------------------
# loader
# ----------------------------------------------------------------------------------------------


def photo(rng, w: int, h: int):
    """An ImageNet-like RGB image: smooth fields, shapes, blur and grain (about 64 KB as JPEG).

    The generator of ``benchmarks/data_pipeline.py`` (copied: that script imports private names
    of the engine, which may move).
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    img = np.full((h, w, 3), 128.0, dtype=np.float32)
    for cells, amp in ((4, 70), (16, 40), (64, 22), (160, 14)):
        noise = rng.normal(0, 1, (cells * h // w + 2, cells + 2, 3))
        small = Image.fromarray(np.uint8(np.clip(noise * 40 + 128, 0, 255)))
        img += (np.asarray(small.resize((w, h), Image.BICUBIC), np.float32) - 128) / 40 * amp
    pil = Image.fromarray(np.uint8(np.clip(img, 0, 255)))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(8, 21))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    grain = rng.normal(0, 7, (h, w, 3))
    out = np.asarray(pil.filter(ImageFilter.GaussianBlur(1.0)), np.float32) + grain
    return Image.fromarray(np.uint8(np.clip(out, 0, 255)))


def _write_jpeg(job) -> None:
    import numpy as np

    path, w, h, seed = job
    photo(np.random.default_rng(seed), w, h).save(path, quality=90)


def generate_jpegs(folder: Path, n: int, widths: tuple[int, int], classes: int = 10):
    """``n`` ImageNet-like JPEGs (quality 90, 4:3 or 3:4, ``widths``: the long side's range)."""
    import multiprocessing

    import numpy as np

    rng = np.random.default_rng(0)
    jobs = []
    for i in range(n):
        long = int(rng.integers(*widths))
        w, h = (long, round(long * 3 / 4)) if i % 4 else (round(long * 3 / 4), long)
        path = folder / f"c{i % classes}" / f"img{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((path, w, h, i))
    with multiprocessing.get_context("fork").Pool(min(16, os.cpu_count() or 1)) as pool:
        pool.map(_write_jpeg, jobs, chunksize=8)
    return [(p, i % classes) for i, (p, *_rest) in enumerate(jobs)]


class JpegBytes:
    """Training items for GPU decode: the file's bytes and a RandomResizedCrop box."""

    def __init__(self, files, seed: int = 0) -> None:
        self.files, self.seed = files, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key):
        import math

        import numpy as np
        import torchvision
        from PIL import Image

        epoch, i = key if isinstance(key, tuple) else (0, key)
        path = str(self.files[i][0])
        with Image.open(path) as im:  # the header only
            w, h = im.size
        rng = np.random.default_rng([self.seed, epoch, i])
        box = (0, 0, h, w)
        for _ in range(10):
            area = h * w * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                box = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
                break
        return torchvision.io.read_file(path), box


def _collate_bytes(items):
    return [d for d, _ in items], [b for _, b in items]


def step_loader(ctx: Context) -> dict:
    """Images/s the loader yields to the device: CPU decode (robustkd's ImageSet), GPU decode."""
    import torch
    import yaml

    from robustkd.data.prepared import PreparedDataset, PreparedWriter
    from robustkd.engine.data import (
        EpochBatches,
        ImageSet,
        ViewConfig,
        epoch_batches,
        epoch_loader,
        to_unit_float,
    )

    device = device_of(ctx)
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    threads = int(profile["set-threads"]["distill"])
    slurm_workers = threads - 1  # the training jobs use threads - 1 loader workers
    if ctx.gpu:
        unique, n, widths, size, batch = 384, 3072, (400, 641), 224, 128
        worker_counts, epochs = [slurm_workers, 15], 2
    else:
        unique, n, widths, size, batch = 48, 96, (48, 81), 32, 16
        worker_counts, epochs = [1, 2], 2
    t0 = time.perf_counter()
    made = generate_jpegs(ctx.scratch / "jpegs", unique, widths)
    generated = time.perf_counter() - t0
    mean_kb = sum(p.stat().st_size for p, _ in made) / len(made) / 1024
    # Each file serves n / unique entries (its own crops each): decoding costs the same.
    files = [made[i % unique] for i in range(n)]
    root = ctx.scratch / "prepared"
    with PreparedWriter(root, [f"c{i}" for i in range(10)], verify_images=False) as w:
        for i, (p, label) in enumerate(files):
            w.add_file("train", label, p, f"{p.parent.name}/{i:05d}_{p.name}")
    dataset = ImageSet(PreparedDataset(root), "train", ViewConfig(size=size), train=True, seed=0)

    def measure(loader, sampler, consume) -> float:
        """Images/s after the first batch (workers started), over ``epochs`` epochs.

        With ``sampler`` None the loader holds every epoch's batches: one pass.
        """
        seen, t_first = 0, None
        for epoch in range(epochs if sampler is not None else 1):
            if sampler is not None:
                sampler.set(epoch, epoch_batches(len(dataset), batch, 0, epoch))
            for item in loader:
                k = consume(item)
                if t_first is None:
                    sync(device)
                    t_first = time.perf_counter()
                else:
                    seen += k
        sync(device)
        return seen / (time.perf_counter() - t_first)

    def to_device(item):
        images, labels = item
        x = to_unit_float(images.to(device, non_blocking=True))
        labels.to(device, non_blocking=True)
        return len(x)

    rates: dict[str, float] = {}
    problems = []
    for workers in worker_counts:
        sampler = EpochBatches()
        loader = epoch_loader(dataset, sampler, workers, pin_memory=device.type == "cuda")
        rates[f"cpu_decode@{workers}"] = round(measure(loader, sampler, to_device), 1)
        del loader
    gpu_decode = None
    if device.type == "cuda":
        try:
            import torch.nn.functional as F
            import torchvision
            from torch.utils.data import DataLoader

            decode = torchvision.io.decode_jpeg

            def gpu_batch(item) -> int:
                data, boxes = item
                decoded = decode(data, device=device)  # a list of (3, H, W) uint8
                crops = [
                    F.interpolate(
                        img[None, :, y : y + h, x : x + w].float(),
                        size=(size, size),
                        mode="bilinear",
                        antialias=True,
                    )
                    for img, (y, x, h, w) in zip(decoded, boxes, strict=True)
                ]
                return len(torch.cat(crops) / 255.0)

            gbytes = JpegBytes(files)
            for workers in worker_counts:
                batches = [
                    [(e, i) for i in b]
                    for e in range(epochs)
                    for b in epoch_batches(len(gbytes), batch, 0, e)
                ]
                loader = DataLoader(
                    gbytes,
                    batch_sampler=batches,
                    num_workers=workers,
                    collate_fn=_collate_bytes,
                )
                rates[f"gpu_decode@{workers}"] = round(measure(loader, None, gpu_batch), 1)
            gpu_decode = "torchvision.io.decode_jpeg(device='cuda'), batched, torchvision "
            gpu_decode += torchvision.__version__
        except Exception as exc:  # noqa: BLE001 - the CPU decode figures stand
            problems.append(f"GPU decode failed: {type(exc).__name__}: {str(exc)[:300]}")
    return {
        "device": describe_torch_device(device),
        "images": n,
        "distinct_files": unique,
        "mean_kib": round(mean_kb, 1),
        "generated_s": round(generated, 1),
        "img": size,
        "batch": batch,
        "epochs": epochs,
        "slurm_threads": threads,
        "slurm_workers": slurm_workers,
        "img_per_s": rates,
        "gpu_decode": gpu_decode,
        "problems": problems,
    }


# ----------------------------------------------------------------------------------------------
# tests: the CUDA-only, resume and determinism tests (pytest plugin: -p gpu_check)
# ----------------------------------------------------------------------------------------------

SELECT_OPTION = "--gpu-check-select"
# Tests by name: CUDA-only ones, and training that resumes or repeats bit-identically (on CUDA
# wherever its jobs resolve their device: "auto"); not the CPU-kernel ones (avx2, cpu).
_NAME = re.compile(r"cuda|resum|bit_identical|identically", re.IGNORECASE)
_NOT = re.compile(r"avx2|_cpu", re.IGNORECASE)


def pytest_addoption(parser) -> None:
    parser.addoption(
        SELECT_OPTION,
        action="store_true",
        help="keep only the tests that make gpu-check runs on CUDA (benchmarks/gpu_check.py)",
    )


def wanted(item) -> bool:
    """CUDA-only tests (by name, marker or a skip reason naming CUDA) and resume/determinism."""
    marks = {m.name for m in item.iter_markers()}
    if marks & {"slurm", "e2e"}:  # the dag step runs the whole tiny DAG on the GPU
        return False
    if marks & {"cuda", "gpu"}:
        return True
    if _NAME.search(item.name) and not _NOT.search(item.name):
        return True
    for mark in item.iter_markers("skipif"):
        if re.search(r"cuda|gpu", str(mark.kwargs.get("reason", "")), re.IGNORECASE):
            return True
    return False


def pytest_collection_modifyitems(config, items) -> None:
    if not config.getoption(SELECT_OPTION):
        return
    keep = [i for i in items if wanted(i)]
    config.hook.pytest_deselected(items=[i for i in items if not wanted(i)])
    items[:] = keep


def junit_summary(path: Path) -> dict:
    """Counts and failures of a pytest JUnit XML report."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failures = []
    for case in suite.iter("testcase"):
        for tag in ("failure", "error"):
            for bad in case.findall(tag):
                failures.append(
                    {
                        "test": f"{case.get('classname')}::{case.get('name')}",
                        "kind": tag,
                        "message": (bad.get("message") or "")[:500],
                    }
                )
    n = int(suite.get("tests", 0))
    failed, errors = int(suite.get("failures", 0)), int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {
        "selected": n,
        "passed": n - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "failures": failures,
        "problems": [f"{f['test']}: {f['message'][:200]}" for f in failures],
    }


def step_tests(ctx: Context) -> dict:
    files = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if re.search(r"cuda|mark\.gpu|resum|bit_identical|identically", p.read_text(), re.I)
    )
    junit = ctx.scratch / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "gpu_check", SELECT_OPTION]
    cmd += ["-p", "no:cacheprovider", "--junitxml", str(junit), *files]
    # -v: each test's name as it starts, so a run cut short still says where it was; a test
    # that hangs fails after 120 s (pytest-timeout) instead of taking the step with it.
    cmd += ["--collect-only", "-q"] if not ctx.gpu else ["-v", "--timeout", "120"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "benchmarks"), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=max(10, ctx.left() - 10))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, _ = proc.communicate()
        print(stdout[-20000:])
        tail = stdout[-1500:]
        raise RuntimeError(f"pytest cut short by the step's time; its end:\n{tail}") from None
    print(stdout[-20000:])
    out: dict = {"files": files, "returncode": proc.returncode, "collected_only": not ctx.gpu}
    if not ctx.gpu:
        ids = [ln for ln in stdout.splitlines() if "::" in ln]
        out.update(selected=len(ids), tests=ids)
        if proc.returncode != 0 or not ids:
            raise RuntimeError(f"collection failed (exit {proc.returncode}): {stdout[-800:]}")
        return out
    out.update(junit_summary(junit))
    shutil.copy(junit, ctx.out / "tests_junit.xml")
    return out


# ----------------------------------------------------------------------------------------------
# dag: the tiny overlay's whole DAG on the GPU
# ----------------------------------------------------------------------------------------------


def gpu_rules() -> list[str]:
    """The rules the SLURM profile gives a GPU (their jobs must compute on CUDA)."""
    import yaml

    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    return sorted(r for r, res in profile["set-resources"].items() if "gpu" in (res or {}))


def provenance_devices(results: Path, rules: list[str]) -> dict:
    """Each job's provenance device by rule; which GPU rules' records do not say cuda."""
    by_rule: dict[str, dict[str, int]] = {}
    off = []
    total = on_cuda = 0
    for path in sorted(results.rglob("*provenance.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            off.append(f"{path}: unreadable ({exc})")
            continue
        rule, device = record.get("rule"), str(record.get("device"))
        counts = by_rule.setdefault(str(rule), {})
        counts[device] = counts.get(device, 0) + 1
        if rule in rules:
            total += 1
            if "cuda" in device:
                on_cuda += 1
            else:
                off.append(f"{path.relative_to(results.parent)}: {rule} on {device}")
    return {
        "devices_by_rule": by_rule,
        "gpu_records": total,
        "gpu_records_on_cuda": on_cuda,
        "not_on_cuda": off[:20],
    }


def step_dag(ctx: Context) -> dict:
    work = ctx.scratch / "tiny_dag"
    work.mkdir()
    for name in ("Snakefile", "config", "workflow", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    shutil.copytree(ROOT / "tests" / "data", work / "tests" / "data")
    (work / "src").symlink_to(ROOT / "src")
    cores = len(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "snakemake", "all", "--cores", str(cores)]
    cmd += ["--scheduler", "greedy", "--configfile", "config/demo.yaml", "tests/data/tiny.yaml"]
    if ctx.gpu:
        cmd += ["--keep-going"]
    else:
        cmd += ["--dry-run"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=max(10, ctx.left() - 15),
            start_new_session=True,
        )
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = "timeout"
        stdout = (exc.stdout or b"").decode(errors="replace") if exc.stdout else ""
        stderr = (exc.stderr or b"").decode(errors="replace") if exc.stderr else ""
    seconds = time.perf_counter() - t0
    text = stdout + stderr
    print(text[-30000:])
    out: dict = {"command": " ".join(cmd[1:]), "returncode": returncode, "seconds": seconds}
    out["dry_run"] = not ctx.gpu
    total = re.findall(r"^total\s+(\d+)", text, re.MULTILINE)
    out["jobs"] = int(total[0]) if total else None
    done = re.findall(r"(\d+) of (\d+) steps \((\d+)%\) done", text)
    out["jobs_done"] = f"{done[-1][0]} of {done[-1][1]}" if done else None
    if not ctx.gpu:
        if returncode != 0:
            raise RuntimeError(f"dry run failed ({returncode}):\n{text[-2000:]}")
        return out
    out["failed_rules"] = sorted(set(re.findall(r"Error in rule (\w+)", text)))[:20]
    out.update(provenance_devices(work / "results", gpu_rules()))
    out["gpu_rules"] = gpu_rules()
    problems = []
    if returncode != 0:
        problems.append(f"snakemake exit {returncode}; failed rules: {out['failed_rules']}")
    if out["not_on_cuda"]:
        problems.append(f"GPU jobs not on cuda: {out['not_on_cuda'][:5]}")
    if not out["gpu_records"]:
        problems.append("no provenance record of a GPU rule was written")
    out["problems"] = problems
    if problems:  # the job logs come back with the record
        import tarfile

        with tarfile.open(ctx.out / "dag_logs.tar.gz", "w:gz") as tar:
            for sub in ("logs", ".snakemake/log"):
                if (work / sub).exists():
                    tar.add(work / sub, arcname=sub)
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
