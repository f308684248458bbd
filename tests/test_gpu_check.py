"""`make gpu-check` (benchmarks/gpu_check.py): its reduced CPU mode runs in CI, so it cannot rot.

The CPU run checks that every step runs and that the record and the summary exist and parse;
no figure is judged (time is never asserted). The pieces the GPU mode alone exercises (the
verdicts on the goals, the provenance devices of the tiny DAG) are checked on hand-made input.
"""

import importlib.util
import json
import re
import sys

import pytest

from tests import bounded
from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_cpu_mode_writes_a_record_and_a_summary_that_parse(tmp_path, gpu_check, capsys):
    # A generous deadline: on a busy machine the 2-minute design target would skip steps.
    cmd = [sys.executable, str(SCRIPT), "--cpu", "--out", str(tmp_path), "--deadline", "1200"]
    proc = bounded.run(cmd, what="benchmarks/gpu_check.py --cpu", timeout=bounded.JOB, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    lines = [json.loads(ln) for ln in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    header, steps, summary = lines[0], lines[1:-1], lines[-1]
    assert header["kind"] == "header" and header["mode"] == "cpu"
    assert summary["kind"] == "summary" and summary["mode"] == "cpu"
    assert [s["step"] for s in steps] == [s.name for s in gpu_check.STEPS]
    status = {s["step"]: s["status"] for s in steps}
    assert status.pop("distill_compile") == "skipped"  # GPU mode only
    assert set(status.values()) == {"ok"}, [(s["step"], s.get("error")) for s in steps]
    results = {s["step"]: s["result"] for s in steps if s["status"] == "ok"}
    for name in ("distill", "finetune", "contrastive_inversion", "evaluate"):
        assert results[name]["img_per_s"] > 0 and results[name]["flops_per_image"] > 0, name
    assert results["env"]["versions"]["torch"] and results["env"]["torch_pin"]["pinned"]
    assert results["matmul_peak"]["peak_bf16_tflops"] > 0
    assert set(results["precision"]["against_fp32"]) == {"bf16", "fp16"}
    assert set(results["loader"]["img_per_s"]) == {"cpu_decode@1", "cpu_decode@2"}
    assert results["loader"]["slurm_workers"] == 7  # profiles/slurm: 8 threads per GPU job
    # the selection of the tests step: CUDA-only, resume and bit-identical tests, collected
    tests = results["tests"]["tests"]
    assert any("test_distortions.py::test_runs_on_cuda" in t for t in tests)
    assert any(t.startswith("tests/test_resume.py::") for t in tests)
    assert not any("avx2" in t or "test_slurm" in t or "test_workflow" in t for t in tests)
    assert results["dag"]["dry_run"] and results["dag"]["jobs"] > 20
    assert all(
        g["verdict"] in ("not applicable (CPU mode)", "not measured") for g in summary["goals"]
    )
    assert {"distill", "finetune", "distill_ci", "evaluate"} <= set(summary["plan_throughput"])

    text = (tmp_path / "gpu_check.md").read_text()
    assert text.startswith("# GPU check (cpu mode)")
    assert "## Goals (reported, not asserted)" in text
    rows = [ln for ln in text.splitlines() if re.match(r"\| \w+ \| (ok|skipped) \|", ln)]
    assert len(rows) == len(gpu_check.STEPS)
    assert (tmp_path / "gpu_check.log").stat().st_size > 0

    # robustkd plan --measured reads the record
    from robustkd.plan import read_measured

    measured = read_measured(tmp_path / "gpu_check.jsonl")
    assert measured["distill"][0] == results["distill"]["img_per_s"]
    assert "cpu mode" in measured["distill"][1]
    with capsys.disabled():  # CI's log shows the record's summary
        print(f"\n{text}")


def test_the_docstring_states_each_step_budget_and_timeout(gpu_check):
    """The table of the module docstring is the one the runner enforces."""
    rows = {}
    for line in gpu_check.__doc__.splitlines():
        m = re.match(r"\| (\w+) \| ([\d, ]+) \| ([\d, -]+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    assert list(rows) == [s.name for s in gpu_check.STEPS]
    for step in gpu_check.STEPS:
        gpu, cpu = rows[step.name]
        assert gpu == f"{step.gpu[0]:g}, {step.gpu[1]:g}", step.name
        assert cpu == ("-, -" if step.cpu[1] == 0 else f"{step.cpu[0]:g}, {step.cpu[1]:g}")
    assert sum(s.gpu[0] for s in gpu_check.STEPS) <= gpu_check.DEADLINE["gpu"] <= 8 * 60
    assert sum(s.cpu[0] for s in gpu_check.STEPS) <= gpu_check.DEADLINE["cpu"] <= 2 * 60
    assert "--target /tmp/site .whl/*.whl" in gpu_check.__doc__
    wheels = (ROOT / "benchmarks" / "gpu_wheels.txt").read_text()
    pins = [ln.split("#")[0].strip() for ln in wheels.splitlines() if ln.split("#")[0].strip()]
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", p) for p in pins), pins
    assert any(p.startswith("snakemake==") for p in pins)
    assert not any(p.lower().startswith("pulp==") for p in pins)  # --scheduler greedy


def _entry(step, result, status="ok"):
    return {"kind": "step", "step": step, "status": status, "result": result}


def test_goals_are_judged_against_the_measured_peak(gpu_check):
    header = {"mode": "gpu", "device": "H100"}
    entries = [
        _entry("matmul_peak", {"peak_bf16_tflops": 800.0}),
        # 2,000 img/s x 140 GFLOP = 280 TFLOP/s: 35 % of 800
        _entry("distill", {"img_per_s": 2000.0, "flops_per_image": 140e9}),
        # compiled: 2,400 img/s: 42 %
        _entry("distill_compile", {"img_per_s": 2400.0, "flops_per_image": 140e9}),
        _entry(
            "loader",
            {"slurm_workers": 7, "img_per_s": {"cpu_decode@7": 2000.0, "gpu_decode@7": 3000.0}},
        ),
        _entry("evaluate", {"img_per_s": 5000.0, "plan_throughput": {"evaluate": 5000.0}}),
        _entry("finetune", {"plan_throughput": {"finetune": 9.0}}, status="failed"),
    ]
    summary = gpu_check.summarise(header, entries, 400.0)
    assert summary["mfu"] == {"distill": 0.35, "distill_compile": 0.42}
    verdicts = [g["verdict"] for g in summary["goals"]]
    assert verdicts == ["met", "met", "NOT met"]  # MFU 42 %, feed 3000/2400 = 1.25x, 5,000
    assert summary["goals"][1]["measured"].startswith("1.25x")
    assert summary["plan_throughput"] == {"evaluate": 5000.0}  # a failed step gives none
    assert summary["steps"] == {"ok": 5, "failed": 1}
    cpu = gpu_check.summarise({"mode": "cpu"}, entries, 60.0)
    assert {g["verdict"] for g in cpu["goals"]} == {"not applicable (CPU mode)"}
    nothing = gpu_check.summarise(header, [], 1.0)
    assert {g["verdict"] for g in nothing["goals"]} == {"not measured"}


def test_gpu_jobs_whose_provenance_names_another_device_are_listed(tmp_path, gpu_check):
    results = tmp_path / "results"
    records = {
        "distill/ours/mask-0.90/seed0/provenance.json": ("distill", "cuda:0"),
        "distill/ours/mask-0.90/seed1/provenance.json": ("distill", "cpu"),
        "figures/fig2.provenance.json": ("make_figure", "cpu"),  # a CPU rule: fine
        "ladder/mask-0.90/ladder.provenance.json": ("evaluate_ladder", "cuda:0"),
    }
    for rel, (rule, device) in records.items():
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_text(json.dumps({"rule": rule, "device": device}))
    rules = gpu_check.gpu_rules()
    assert {"distill", "distill_ci", "finetune", "evaluate_ladder"} <= set(rules)
    assert "make_figure" not in rules and "corrupt_evalset" not in rules
    got = gpu_check.provenance_devices(results, rules)
    assert (got["gpu_records"], got["gpu_records_on_cuda"]) == (3, 2)
    assert got["not_on_cuda"] == [
        "results/distill/ours/mask-0.90/seed1/provenance.json: distill on cpu"
    ]
    assert got["devices_by_rule"]["distill"] == {"cuda:0": 1, "cpu": 1}
