"""How evaluation feeds a GPU (issue 25, point 5), observed on CPU.

Pinned host memory (the pinning seam :func:`robustkd.engine.evaluate.pin_batch` replaced by a
counting copy), decoded batches kept or read again, the precision of an evaluation (autocast on
CUDA only; float32 and unchanged numbers on CPU), and loader workers started once per job.
"""

from __future__ import annotations

import functools
import os
import pickle
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from robustkd.data import PreparedWriter
from robustkd.distortions import create_distortion
from robustkd.engine import evalfeed, evaluate
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.corrupted import ArraySet, corruption_eval_job
from robustkd.engine.evaluate import (
    EvalLoader,
    autocast_dtype,
    evaluate_classifier,
    evaluate_parts,
)
from robustkd.engine.finetune import Classifier
from robustkd.engine.inputs import input_view
from robustkd.engine.storedsets import StoredCorruptions
from robustkd.models.backbones import create_backbone

CPU = torch.device("cpu")


class Linear(nn.Module):
    """A fixed linear classifier of (B, 3, 8, 8) images into 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _set(n: int = 40, seed: int = 0) -> ArraySet:
    rng = np.random.default_rng(seed)
    return ArraySet(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 5, n))


class PinCounter:
    """A stand-in for pinning on CPU: copies, and counts the copies alive at each pin."""

    def __init__(self) -> None:
        self.alive: list[weakref.ref[torch.Tensor]] = []
        self.calls = 0
        self.most_alive_bytes = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        copy = x.clone()
        self.calls += 1
        self.alive = [r for r in self.alive if r() is not None] + [weakref.ref(copy)]
        live = sum(t.nbytes for r in self.alive if (t := r()) is not None)
        self.most_alive_bytes = max(self.most_alive_bytes, live)
        return copy


def test_pinned_memory_is_a_few_batches_not_the_set(monkeypatch):
    # Before: every decoded batch of the set was kept pinned (the loader pinned, the batches were
    # cached), 21 GiB for CAMELYON17's test set at the 64 MiB the host allocator rounds each to.
    data, noise = _set(), create_distortion({"family": "noise", "sigma": 0.3})
    kw = dict(repeats=3, seed=0, batch_size=4, device=CPU)
    want = evaluate_classifier(Linear(), data, noise, lambda x: x, **kw)
    pins = PinCounter()
    monkeypatch.setattr(evalfeed, "pin_batch", pins)
    got = evaluate_classifier(Linear(), data, noise, lambda x: x, pin=True, **kw)
    assert got == want
    assert pins.calls == 2 * 3 * 10  # images and labels of 10 batches, 3 repeats
    batch_bytes = 4 * 3 * 8 * 8 + 4 * 8  # uint8 images and int64 labels of one batch
    assert pins.most_alive_bytes <= 2 * batch_bytes  # the set is 10 batches


def test_a_large_set_is_read_again_for_each_repeat(monkeypatch):
    data, noise = _set(), create_distortion({"family": "noise", "sigma": 0.3})
    reads = []
    get = ArraySet.__getitem__
    monkeypatch.setattr(ArraySet, "__getitem__", lambda self, i: reads.append(i) or get(self, i))
    kw = dict(repeats=3, seed=0, batch_size=4, device=CPU)
    kept = evaluate_classifier(Linear(), data, noise, lambda x: x, **kw)
    assert len(reads) == 40  # decoded once, kept for repeats 2 and 3
    reads.clear()
    monkeypatch.setattr(evalfeed, "CACHE_BYTES", 40 * 3 * 8 * 8 - 1)  # one byte short
    assert evaluate_classifier(Linear(), data, noise, lambda x: x, **kw) == kept
    assert len(reads) == 3 * 40


def test_evaluation_precision_is_float32_on_cpu_and_autocast_on_cuda(monkeypatch):
    data, noise = _set(), create_distortion({"family": "noise", "sigma": 0.3})
    kw = dict(repeats=2, seed=0, batch_size=4, device=CPU)
    assert evaluate_classifier(Linear(), data, noise, lambda x: x, amp=True, **kw) == (
        evaluate_classifier(Linear(), data, noise, lambda x: x, amp=False, **kw)
    )
    assert autocast_dtype(CPU, True) is None
    cuda = torch.device("cuda", 0)
    assert autocast_dtype(cuda, False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype(cuda, True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype(cuda, True) == torch.float16


def _tf32_state() -> tuple[object, object]:
    """CUDA's TF32 settings of matrix products and convolutions, in this torch's own terms."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # PyTorch 2.9 and later
        return matmul.fp32_precision, cudnn.conv.fp32_precision
    return matmul.allow_tf32, cudnn.allow_tf32


def test_tf32_is_allowed_inside_and_restored_after():
    before = _tf32_state()
    with evaluate._tf32():
        assert _tf32_state() in {("tf32", "tf32"), (True, True)}
    assert _tf32_state() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_evaluation_runs_under_autocast_through_pinned_memory(monkeypatch):
    seen: list[torch.dtype] = []
    model = Linear()
    model.net[1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    pins = PinCounter()
    real = evalfeed.pin_batch
    monkeypatch.setattr(evalfeed, "pin_batch", lambda x: real(pins(x)))
    dev = torch.device("cuda")
    kw = dict(repeats=1, seed=0, batch_size=4, device=dev)
    want = evaluate_classifier(model, _set(), None, lambda x: x, amp=False, pin=False, **kw)
    assert set(seen) == {torch.float32} and pins.calls == 0
    seen.clear()
    if hasattr(torch.cuda, "reset_peak_host_memory_stats"):
        torch.cuda.reset_peak_host_memory_stats()
    m = evaluate_classifier(model, _set(), None, lambda x: x, amp=True, **kw)
    assert m["n"] == want["n"] == 40 and pins.calls == 2 * 10
    assert set(seen) == {autocast_dtype(dev, True)}
    # Pinned blocks in use at once: images and labels of a few batches, not of all 10.
    torch.cuda.synchronize()
    stats = torch.cuda.host_memory_stats() if hasattr(torch.cuda, "host_memory_stats") else {}
    if "active_requests.peak" in stats:
        assert stats["active_requests.peak"] <= 2 * (evaluate.AHEAD + 2)


def test_parts_score_as_separate_evaluations():
    data = _set(30)
    parts = [range(0, 12), range(12, 30), [3, 1, 4, 1, 5]]
    models = [Linear(), nn.Sequential(nn.Flatten(), nn.Linear(192, 5))]
    got = evaluate_parts(models, EvalLoader(data), parts, lambda x: x, batch_size=4, device=CPU)
    for model, per_part in zip(models, got, strict=True):
        for part, m in zip(parts, per_part, strict=True):
            alone = ArraySet(data.images[list(part)], data.labels[list(part)])
            want = evaluate_classifier(
                model, alone, None, lambda x: x, repeats=1, seed=0, batch_size=4, device=CPU
            )
            assert m == {"top1": want["top1"], "top5": want["top5"], "n": len(part)}


def _count_start(path: str, inner, worker_id: int) -> None:
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {worker_id}\n")
    if inner is not None:
        inner(worker_id)


@pytest.fixture
def corruption_job(tmp_path):
    """The inputs of a corruption evaluation: 2 seeds x 2 corruptions x 2 severities."""
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "prepared"
    with PreparedWriter(data_dir, ["a", "b", "c"], provenance={"rule": "test"}) as w:
        w.add_array("val", rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), [0, 1, 2] * 2)
    spec = {
        "timm_name": "vit_tiny_patch16_224",
        "weights": None,
        "kwargs": {"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2},
    }
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(tmp_path / f"seed{seed}" / "model.pth")
        models[-1].parent.mkdir()
        save_weights(models[-1], Classifier(create_backbone(spec), 3))
    corrupted = {}
    for name in ("gaussian_noise", "fog"):
        corrupted[name] = tmp_path / f"{name}.npy"
        np.save(corrupted[name], rng.integers(0, 256, (2 * 6, 8, 8, 3), dtype=np.uint8))
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([0, 1, 2, 2, 1, 0], dtype=np.uint8))
    return dict(
        backbone=spec,
        models=[str(m) for m in models],
        seeds=[0, 1],
        data_dir=str(data_dir),
        corrupted={k: str(v) for k, v in corrupted.items()},
        labels=str(labels),
        severities=[1, 3],
        evaluation={"batch_size": 4, "repeats": 1, "amp": True},
        views={},
        out=str(tmp_path / "eval" / "corruptions.json"),
        device="cpu",
    )


def test_corruption_evaluation_starts_its_workers_once(monkeypatch, tmp_path, corruption_job):
    # Before: a loader, and its workers, per seed, corruption and severity (225 at paper scale).
    starts = tmp_path / "starts.txt"
    init = DataLoader.__init__

    def counting_init(self, *args, worker_init_fn=None, **kw):
        init(
            self,
            *args,
            worker_init_fn=functools.partial(_count_start, str(starts), worker_init_fn),
            **kw,
        )

    monkeypatch.setattr(DataLoader, "__init__", counting_init)
    monkeypatch.setattr("robustkd.engine.inputs.set_threads", lambda threads: 2)  # 2 workers
    record = corruption_eval_job(**corruption_job)
    assert len(starts.read_text().splitlines()) == 2  # 8 evaluations, 2 workers, started once
    # The numbers of one evaluation per (seed, corruption, severity), as before.
    view, normalize = input_view({}, corruption_job["backbone"])
    y = np.load(corruption_job["labels"])
    want = []
    for seed, path in zip((0, 1), corruption_job["models"], strict=True):
        clf = Classifier(create_backbone(corruption_job["backbone"]), 3)
        clf.load_state_dict(torch.load(path))
        for name, file in corruption_job["corrupted"].items():
            for j, s in enumerate((1, 3)):
                part = ArraySet(np.load(file)[j * 6 : (j + 1) * 6], y)
                m = evaluate_classifier(
                    clf, part, None, normalize, repeats=1, seed=seed, batch_size=4, device=CPU
                )
                want.append(
                    {"seed": seed, "corruption": name, "severity": s}
                    | {k: m[k] for k in ("top1", "top5", "n")}
                )
    assert record["results"] == want
    assert Path(corruption_job["out"]).is_file()


def test_stored_corruptions_index_every_part_and_pickle_without_their_pixels(tmp_path):
    rng = np.random.default_rng(0)
    files, arrays = [], []
    for name in ("a", "b"):
        arrays.append(rng.integers(0, 256, (3 * 4, 8, 8, 3), dtype=np.uint8))  # 3 severities
        files.append(tmp_path / f"{name}.npy")
        np.save(files[-1], arrays[-1])
    labels = np.array([2, 0, 1, 1])
    data = StoredCorruptions(files, labels, 3)
    assert len(data) == 2 * 3 * 4 and data.part(1, 2) == range(20, 24)
    image, label = data[21]  # file b, severity number 2, image 1
    assert torch.equal(image, torch.from_numpy(arrays[1][9]).permute(2, 0, 1))
    assert int(label) == 0
    data.arrays()
    clone = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < arrays[0].nbytes  # maps are reopened, not shipped
    assert torch.equal(clone[21][0], image)
