"""Host synchronisations of the training loop: none per step between boundaries (issue 25).

A GPU runs ahead of the host only while nothing reads a device value on the host. On CUDA the
count is CUDA's own (``torch.cuda.set_sync_debug_mode``); on CPU, where nothing synchronises, a
proxy counts the calls that would (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``,
``bool``/``float``/``int`` of a tensor) made by the loop's own code (not the data loader's, which
reads host data). Steps between boundaries (progress line, checkpoint, epoch end) are counted
as the difference between a run of 2N steps and one of N steps with the same boundaries: it
must be zero, in a terminal as in a batch job, with a ``mixed`` distortion's draw counts
logged.
"""

import sys
import traceback
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from robustkd.distortions import create_distortion
from robustkd.distortions.mixed import draw_counts
from robustkd.engine.loop import train
from robustkd.engine.optim import TrainConfig

_SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
# Code whose reads are of host tensors on a GPU node too: the data loader's, and the unfused
# optimizers' step counter (``_get_value``: a CPU tensor unless fused or capturable; the fused
# AdamW the loop uses on CUDA keeps it on the device).
_HOST_SIDE = ("torch/utils/data", "torch/optim/optimizer.py")


class _Images(torch.utils.data.Dataset):
    """``n`` random uint8 images (3, 8, 8) of 3 classes, keyed by ``(epoch, index)``."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.images = torch.from_numpy(rng.integers(0, 255, (n, 3, 8, 8), dtype=np.uint8))
        self.labels = torch.arange(n) % 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        _, i = key
        return self.images[i], self.labels[i]


class _MixedTask:
    """Cross-entropy on images distorted by a ``mixed`` distortion (its draws are logged)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
        self.distortion = create_distortion(
            {
                "family": "mixed",
                "settings": {
                    "mask": {"family": "mask", "p": 0.5},
                    "noise": {"family": "noise", "sigma": 0.1},
                },
                "include_clean": True,
            }
        )

    def loss(self, images, labels, generator):
        logits = self.model(self.distortion(images, generator))
        ce = nn.functional.cross_entropy(logits, labels)
        return {"loss": ce, "ce": ce.detach()}


def _run(tmp_path, steps: int, device: torch.device) -> None:
    cfg = TrainConfig(
        epochs=1, batch_size=8, lr=1e-2, clip_grad=1.0, log_every=10_000, amp_dtype="float16"
    )
    train(
        _MixedTask(), _Images(8 * steps), cfg, seed=0, run_dir=tmp_path / str(steps), device=device
    )


def _count_cpu_proxy(monkeypatch, run) -> int:
    """Calls of the methods that synchronise a GPU, made outside the data loader."""
    calls: list[str] = []
    for name in _SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            stack = traceback.extract_stack(limit=12)[:-1]
            if not any(part in f.filename for f in stack for part in _HOST_SIDE):
                calls.append(f"{_name} at {stack[-1].filename}:{stack[-1].lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    run()
    monkeypatch.undo()
    return calls


@pytest.mark.parametrize("terminal", [False, True])
def test_no_host_synchronisation_between_boundaries_cpu_proxy(tmp_path, monkeypatch, terminal):
    """N = 4 more steps add no call that would synchronise a GPU (before issue 25: one
    ``.item()`` per step for the preemption flag, in a terminal a flush per step, and
    ``draw_counts``' bincount)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    cpu = torch.device("cpu")
    short = _count_cpu_proxy(monkeypatch, lambda: _run(tmp_path / "a", 4, cpu))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    long = _count_cpu_proxy(monkeypatch, lambda: _run(tmp_path / "b", 8, cpu))
    extra = Counter(long) - Counter(short)
    assert len(long) - len(short) == 0, f"per-step host reads: {dict(extra)}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's own count needs a GPU")
def test_no_cuda_synchronisation_between_boundaries(tmp_path):
    """CUDA's sync debug mode warns at each synchronisation: 2N steps warn as often as N."""

    def warned(steps: int) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _run(tmp_path / "cuda", steps, torch.device("cuda"))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert warned(8) - warned(4) == 0


def test_mixed_draw_counts_match_bincount():
    """The device-side counts equal ``bincount``'s (which syncs on a GPU)."""
    task = _MixedTask()
    task.distortion(torch.rand(64, 3, 8, 8), torch.Generator().manual_seed(3))
    counts = draw_counts(task.distortion)
    want = torch.bincount(task.distortion.last_draw, minlength=3)
    assert [int(v) for v in counts.values()] == want.tolist()
    assert all(v.dtype == torch.int64 and v.ndim == 0 for v in counts.values())
