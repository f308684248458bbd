"""GPU speed options of the training loop that do not change what is computed: ``torch.compile``.

The other such options live where they act: bf16 autocast (``TrainConfig.amp_dtype``, in
:mod:`robustkd.engine.loop`), pinned host memory and persistent loader workers
(:func:`robustkd.engine.data.epoch_loader`), fused scaled-dot-product attention except the CLS
row the attention loss needs (:mod:`robustkd.models.backbones`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["apply_tf32", "compile_step", "restore_tf32", "set_tf32"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., object])


def compile_step(
    fn: F,
    device: torch.device,
    enabled: bool,
    *,
    allow_cpu: bool = False,
    backend: str = "inductor",
) -> F:
    """``fn`` (a step's loss: forward passes and loss) through ``torch.compile``, or ``fn`` itself.

    Under DDP, ``fn`` is the :class:`~torch.nn.parallel.DistributedDataParallel` module itself
    (:func:`robustkd.engine.loop._step_fn`): DDP is wrapped first and the wrapper compiled, as
    PyTorch's DDP notes ask, so that TorchDynamo's DDPOptimizer splits the graph at DDP's
    gradient buckets and the all-reduce of a bucket overlaps the rest of the backward pass
    (compiling the inner module instead makes the whole backward one graph whose gradients are
    all ready at its end). ``tests/test_compile_ddp.py`` trains so on 2 gloo processes.

    The compiled function computes the same loss as ``fn``, up to float rounding: the fused
    kernels of TorchInductor sum in another order (on CPU, float32: losses and gradients agree
    within 1e-5 relative, ``tests/test_accel.py``). Parts that cannot be traced (e.g. drawing
    from a ``torch.Generator``) run eagerly between compiled graphs. The first steps are slow
    while graphs compile.

    Args:
        fn: The step's loss function.
        device: Where it runs.
        enabled: The ``compile`` training setting.
        allow_cpu: Compile on CPU too. Off in the training loop: on CPU the option is ignored
            with a logged note, since TorchInductor's CPU code needs a C++ compiler at run time
            and compiling takes tens of seconds per graph, longer than the miniature's training.
        backend: TorchDynamo's backend: ``"inductor"`` (the default, generating kernels),
            ``"aot_eager"`` (AOTAutograd's graphs run by eager kernels: tests, no compiler).

    Returns:
        The compiled function, or ``fn`` when not enabled or ignored on CPU.
    """
    if not enabled:
        return fn
    if device.type == "cpu" and not allow_cpu:
        log.info("training setting compile: true ignored on CPU (it compiles on GPUs only)")
        return fn
    return torch.compile(fn, backend=backend)  # type: ignore[return-value]


def set_tf32(device: torch.device, enabled: bool) -> bool:
    """Allow TF32 in float32 matrix products and convolutions on CUDA (the ``tf32`` setting).

    Only the CUDA switches are set (``torch.backends.cuda.matmul`` and ``cudnn``): on CPU
    nothing changes (``torch.set_float32_matmul_precision`` would also let oneDNN round CPU
    products), so CPU results stay those of plain float32.

    Args:
        device: Where the run computes.
        enabled: The ``tf32`` training setting.

    Returns:
        Whether TF32 is now allowed (False on other devices than CUDA).
    """
    if device.type != "cuda":
        return False
    apply_tf32(enabled)
    return enabled


def apply_tf32(enabled: bool) -> tuple[str, Any, Any]:
    """Set the CUDA TF32 switches (matrix products, convolutions); return the previous ones.

    PyTorch 2.9 and later refuse to mix their two ways of setting TF32 (``fp32_precision`` and
    the older ``allow_tf32``): training (:func:`set_tf32`) and evaluation
    (:mod:`robustkd.engine.evaluate`) both go through here, with the newer one where it exists.

    Returns:
        What :func:`restore_tf32` needs to put the previous settings back.
    """
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(getattr(conv, "conv", None), "fp32_precision"):
        saved = ("fp32_precision", matmul.fp32_precision, conv.conv.fp32_precision)
        matmul.fp32_precision = conv.conv.fp32_precision = "tf32" if enabled else "ieee"
        return saved
    saved = ("allow_tf32", matmul.allow_tf32, conv.allow_tf32)
    matmul.allow_tf32 = conv.allow_tf32 = enabled
    return saved


def restore_tf32(saved: tuple[str, Any, Any]) -> None:
    """Put back the TF32 switches :func:`apply_tf32` returned."""
    api, mm, cv = saved
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if api == "fp32_precision":
        matmul.fp32_precision, conv.conv.fp32_precision = mm, cv
    else:
        matmul.allow_tf32, conv.allow_tf32 = mm, cv
