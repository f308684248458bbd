"""torch.compile of a training step computes the loss and gradients of the eager step.

The training loop compiles on GPUs only (on CPU the option is ignored: tests/test_engine.py);
here the same function is compiled on CPU, which works where a C++ compiler is installed
(TorchInductor generates C++), to check what it computes. Compiling took 73 s on 2 shared
cores with an empty TorchInductor cache (8.5 s with a warm one).

The cache is one folder per ATen CPU kernel level: TorchInductor's default cache, filled on
AVX-512 kernels and reused under ``ATEN_CPU_CAPABILITY=avx2`` (``make test-avx2`` after
``make test``), made the compiled attention loss NaN (torch 2.14.1, measured 2026-12-01), while
a cache filled on AVX2 kernels gives the eager result.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from robustkd.distortions import create_distortion, seeded_generator
from robustkd.engine.accel import compile_step
from robustkd.engine.distill import DistillTask, Normalize
from robustkd.losses.multilevel import create_multilevel_loss
from robustkd.models import copy_student, create_backbone, freeze

SPEC = {
    "timm_name": "vit_tiny_patch16_224",
    "weights": None,
    "kwargs": {"img_size": 16, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3},
}
WEIGHTS = {"lambda_g": 1.0, "lambda_l": 1.0, "lambda_a": 10.0, "tau": 2.0}


@pytest.mark.skipif(shutil.which("c++") is None, reason="TorchInductor on CPU needs a C++ compiler")
def test_compiled_distillation_step_matches_eager(monkeypatch):
    """Multi-level distillation (CLS, patches, CLS attention; masked student input): the
    compiled step's loss components within 1e-5 relative (1e-6 absolute) of eager, every
    gradient within 1e-5 of its tensor's largest entry (measured: about 5e-7)."""
    level = torch.backends.cpu.get_cpu_capability()
    cache = Path(tempfile.gettempdir()) / f"robustkd-inductor-{level}"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch.manual_seed(0)
    teacher = freeze(create_backbone(SPEC))
    student = copy_student(teacher)
    with torch.no_grad():  # a student apart from its teacher: every loss term non-zero
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    task = DistillTask(
        teacher,
        student,
        create_multilevel_loss("ours", WEIGHTS),
        create_distortion({"family": "mask", "p": 0.5}),
        Normalize((0.5,) * 3, (0.5,) * 3),
        with_attention=True,
    )
    images, labels = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    cpu = torch.device("cpu")

    def step(fn):
        student.zero_grad(set_to_none=True)
        losses = fn(images, labels, seeded_generator(cpu, 0, 0, 0))
        losses["loss"].backward()
        return {k: v.detach() for k, v in losses.items()}, [p.grad for p in student.parameters()]

    eager, eager_grads = step(task.loss)
    compiled_fn = compile_step(task.loss, cpu, True, allow_cpu=True)
    assert compiled_fn is not task.loss
    compiled, compiled_grads = step(compiled_fn)
    assert eager.keys() == compiled.keys() and eager["loss"] > 0
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(b.abs().max()))


def test_compile_off_returns_the_step_itself():
    def fn(x):
        return x

    assert compile_step(fn, torch.device("cuda"), False) is fn
    assert compile_step(fn, torch.device("cpu"), True) is fn  # ignored on CPU (logged)


def test_attention_tap_costs_no_graph_break_per_call():
    """The distillation step with the attention tap traces with 2 graph breaks (3 graphs), both
    at the distortion's draw from a ``torch.Generator``; registering and removing the hook at
    each call (before issue 25) added 6 (8 breaks, 9 graphs)."""
    torch.manual_seed(0)
    teacher = freeze(create_backbone(SPEC))
    student = copy_student(teacher)
    task = DistillTask(
        teacher,
        student,
        create_multilevel_loss("ours", WEIGHTS),
        create_distortion({"family": "mask", "p": 0.5}),
        Normalize((0.5,) * 3, (0.5,) * 3),
        with_attention=True,
    )
    images, labels = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    generator = seeded_generator(torch.device("cpu"), 0, 0, 0)
    eager = task.loss(images, labels, generator)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(task.loss)(
        images, labels, seeded_generator(torch.device("cpu"), 0, 0, 0)
    )
    torch._dynamo.reset()
    assert explained.graph_break_count <= 2, [r.reason for r in explained.break_reasons]
    assert not any("hooks.py" in f.filename for r in explained.break_reasons for f in r.user_stack)
    again = task.loss(images, labels, seeded_generator(torch.device("cpu"), 0, 0, 0))
    torch.testing.assert_close(again, eager, rtol=0, atol=0)  # the tap reads the same logits


def test_a_copied_student_has_a_tap_of_its_own():
    """The tap is per model: a deepcopy (copy_student) captures its own projection."""
    from robustkd.models.taps import attach_attention_tap, vit_forward

    teacher = freeze(create_backbone(SPEC))
    attach_attention_tap(teacher)
    student = copy_student(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1)
    x = torch.rand(2, 3, 16, 16)
    t = vit_forward(teacher, x, with_attention=True).attn_logits
    s = vit_forward(student, x, with_attention=True).attn_logits
    assert not torch.equal(t, s)
    assert torch.equal(vit_forward(teacher, x, with_attention=True).attn_logits, t)


def test_training_and_evaluation_set_tf32_through_one_api():
    """Training's tf32 switch and evaluation's TF32 context use the same PyTorch API (2.9 and
    later refuse to mix `allow_tf32` with `fp32_precision`); each restores what it found."""
    from robustkd.engine.accel import apply_tf32, restore_tf32
    from robustkd.engine.evaluate import _tf32

    matmul = torch.backends.cuda.matmul
    api = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, api)
    saved = apply_tf32(False)  # as a training run with tf32: false sets it
    assert saved[0] == api
    off = getattr(matmul, api)
    with _tf32():  # evaluation inside that run
        assert getattr(matmul, api) in ("tf32", True)
    assert getattr(matmul, api) == off
    restore_tf32(saved)
    assert getattr(matmul, api) == before
