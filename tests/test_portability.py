"""Every CNN the project builds trains and resumes bit-identically on AVX2 kernels too (issue 12).

torch and oneDNN pick CPU kernels by instruction set. On AVX2-only kernels, torch 2.14.1's oneDNN
backward of a channels-last 1x1 stride-2 convolution with fewer than 8 input channels corrupted
the heap (SIGSEGV, double free, hangs, silently different gradients), and the CIFAR ResNets were
channels-last on every device. This test forces the AVX2 paths (``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2``; on an AVX2-only CPU they change nothing) and, in a subprocess so that
a crash cannot take pytest down, trains each CNN at the narrow widths of the test overlay
(``config/tiny.yaml``) with the real tasks and loop: once whole, once interrupted during step
5 (checkpoint at step 4) and resumed. Weights, buffers and logs must be equal bit for bit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from tests import bounded
from tests.conftest import ROOT

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
SIZE, CLASSES, TRAIN, TEST = 16, 4, 24, 8  # 24 images, batch 8, 2 epochs: 6 steps


def _cnns() -> list[str]:
    from robustkd.craft.tasks import METHODS

    # The CRAFT teacher (ERM) and every student method (their losses reach different backward
    # paths: CRD's memory banks, CRAFT's views); the Contrastive Inversion encoder stand-in,
    # pretrained as a classifier and distilled with the CI loss.
    return ["craft_teacher", *(f"craft_{m}" for m in METHODS), "clip_pretrain", "clip_ci"]


def _objectives() -> dict[str, dict]:
    from tests.test_craft_training import OBJECTIVES

    return OBJECTIVES


def _interrupting():
    """The CRAFT tests' task wrapper that raises during a given loss call, as a kill would."""
    from tests.test_craft_training import Interrupted, Interrupting

    return Interrupted, Interrupting


def _task(kind: str, overlay: dict, prepared):
    """The real task of one CNN kind, built from the overlay's model specs (seeded)."""
    import torch

    from robustkd.craft.models import CIFAR_MEAN, CIFAR_STD, create_cifar_model, freeze_teacher
    from robustkd.craft.tasks import create_task
    from robustkd.engine.distill import ContrastiveInversionTask, Normalize
    from robustkd.engine.finetune import Classifier, FinetuneTask
    from robustkd.engine.inputs import resolve_distortion
    from robustkd.models.backbones import copy_student, create_backbone, freeze

    normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
    torch.manual_seed(0)
    if kind.startswith("craft_"):
        craft = overlay["craft"]
        method = "erm" if kind == "craft_teacher" else kind.removeprefix("craft_")
        spec = craft["teacher" if kind == "craft_teacher" else "student"]["model"]
        teacher = freeze_teacher(create_cifar_model(craft["teacher"]["model"], CLASSES))
        torch.manual_seed(1)
        student = create_cifar_model(spec, CLASSES)
        labels = torch.as_tensor(prepared.labels("train"))
        objective = _objectives().get(method, {})
        return create_task(method, student, teacher, normalize, objective, train_labels=labels)
    clip = {**overlay["backbones"]["clip"], "timm_name": "resnet18", "weights": None}
    spec = {k: clip[k] for k in ("timm_name", "weights", "kwargs")}
    if kind == "clip_pretrain":
        return FinetuneTask(Classifier(create_backbone(spec), CLASSES), None, normalize)
    teacher = freeze(create_backbone(spec))
    mask = resolve_distortion({"family": "mask", "p": 0.5})
    return ContrastiveInversionTask(teacher, copy_student(teacher), mask, normalize, tau=0.1)


def drive(root: str) -> None:
    """Child process: train every CNN whole, cut and resumed; write what differs as JSON."""
    import numpy as np
    import torch

    from robustkd.craft.tasks.base import IndexedImages
    from robustkd.data import PreparedWriter
    from robustkd.data.prepared import PreparedDataset
    from robustkd.data.synthetic import draw_image
    from robustkd.engine.data import ViewConfig, load_image_set
    from robustkd.engine.loop import train
    from robustkd.engine.optim import TrainConfig

    torch.set_num_threads(1)
    root_dir = Path(root)
    overlay = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
    rng = np.random.default_rng(0)
    with PreparedWriter(root_dir / "data", list("abcd"), provenance={"rule": "test"}) as w:
        for split, n in (("train", TRAIN), ("test", TEST)):
            labels = [i % CLASSES for i in range(n)]
            w.add_array(split, np.stack([draw_image(rng, y, 4, SIZE) for y in labels]), labels)
    prepared = PreparedDataset(root_dir / "data")
    view = ViewConfig(SIZE, crop_scale=(0.6, 1.0))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, checkpoint_every=2, log_every=100)
    Interrupted, Interrupting = _interrupting()
    report = {}
    for kind in _cnns():

        def run(tag, interrupt_at=None, kind=kind):
            images = load_image_set(prepared, "train", view, train=True, preload_size=SIZE)
            data = IndexedImages(images.derive(seed=1)) if kind.startswith("craft_") else images
            task = _task(kind, overlay, prepared)
            if interrupt_at is not None:
                task = Interrupting(task, interrupt_at)
            device = torch.device("cpu")
            summary = train(task, data, cfg, seed=1, run_dir=root_dir / kind / tag, device=device)
            return task.model.state_dict(), summary

        whole, summary = run("whole")
        try:
            run("cut", interrupt_at=5)
        except Interrupted:
            pass
        resumed, resumed_summary = run("cut")
        logs = [(root_dir / kind / t / "log.jsonl").read_text() for t in ("whole", "cut")]
        report[kind] = {
            "steps": summary["steps"],
            "resumed_from": resumed_summary.get("resumed_from"),
            "differs": [k for k, v in whole.items() if not torch.equal(resumed[k], v)],
            "logs_equal": logs[0] == logs[1],
        }
    (root_dir / "report.json").write_text(json.dumps(report))


def test_every_cnn_trains_and_resumes_bit_identically_on_avx2_kernels(tmp_path):
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    code += "from tests.test_portability import drive; drive(sys.argv[1])"
    env = {**os.environ, **AVX2, "OMP_NUM_THREADS": "1"}
    proc = bounded.run(
        [sys.executable, "-c", code, tmp_path],
        what="training every CNN on AVX2 kernels",
        timeout=bounded.JOB,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, (
        f"training on AVX2 kernels exited with code {proc.returncode}:\n{proc.stderr[-4000:]}"
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(report) == sorted(_cnns())
    bad = {
        kind: r
        for kind, r in report.items()
        if r["differs"] or not r["logs_equal"] or r["steps"] != 6 or r["resumed_from"] != 4
    }
    assert not bad, f"not bit-identical after resume on AVX2 kernels: {bad}"


def test_the_avx2_switches_reach_aten_and_onednn():
    """The variables must really lower both kernel levels, or the test above checks nothing.

    ATen reports its level; oneDNN names its ISA in its verbose header (on its first primitive).
    """
    code = (
        "import torch; print(torch.backends.cpu.get_cpu_capability(), flush=True); "
        "c = torch.nn.Conv2d(8, 16, 3); c(torch.randn(2, 8, 16, 16)).sum().backward()"
    )
    env = {**os.environ, **AVX2, "ONEDNN_VERBOSE": "1"}
    proc = bounded.run(
        [sys.executable, "-c", code],
        what="reading torch's CPU levels",
        timeout=bounded.QUICK,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] in {"AVX2", "DEFAULT"}, (
        f"ATEN_CPU_CAPABILITY=avx2 set, yet ATen runs {lines[0]}"
    )
    isa = [ln for ln in lines if ",isa:" in ln]
    assert isa, f"oneDNN printed no ISA line with ONEDNN_VERBOSE=1: {proc.stdout[-2000:]}"
    assert "512" not in isa[0], f"ONEDNN_MAX_CPU_ISA=AVX2 set, yet oneDNN runs {isa[0]}"
