"""The training loop, data views, label fractions, evaluation and checkpoints (tiny models)."""

import json
import math
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from robustkd.data import PreparedWriter
from robustkd.data.prepared import PreparedDataset
from robustkd.engine.checkpoint import NonFiniteError, load_checkpoint, save_checkpoint
from robustkd.engine.data import (
    EpochBatches,
    ViewConfig,
    closing_loader,
    epoch_batches,
    epoch_loader,
    label_fraction_indices,
    load_image_set,
)
from robustkd.engine.evaluate import evaluate_classifier, topk_correct
from robustkd.engine.loop import train
from robustkd.engine.optim import TrainConfig


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory):
    """A 3-class prepared dataset whose class is the image's dominant colour channel."""
    root = tmp_path_factory.mktemp("prep") / "ds"
    rng = np.random.default_rng(0)
    imgs, labels = [], []
    for i in range(60):
        c = i % 3
        img = rng.integers(0, 80, (12, 12, 3), dtype=np.uint8)
        img[..., c] += 150
        imgs.append(img)
        labels.append(c)
    with PreparedWriter(root, ["r", "g", "b"], provenance={"rule": "test"}) as w:
        w.add_array("train", np.stack(imgs[:45]), labels[:45])
        w.add_array("val", np.stack(imgs[45:]), labels[45:])
    return PreparedDataset(root)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3)
        )

    def forward(self, x):
        return self.net(x)


class CETask:
    def __init__(self, model, nan_at=None, raise_at=None):
        self.model, self.nan_at, self.raise_at, self.calls = model, nan_at, raise_at, 0

    def loss(self, images, labels, generator):
        noise = torch.randn(images.shape, generator=generator) * 0.01
        ce = nn.functional.cross_entropy(self.model(images + noise), labels)
        self.calls += 1
        if self.raise_at is not None and self.calls > self.raise_at:
            raise Interrupted
        if self.nan_at is not None and self.calls > self.nan_at:
            ce = ce * float("nan")
        return {"loss": ce, "ce": ce.detach()}


def _cfg(**kw):
    base = dict(
        epochs=3,
        batch_size=8,
        lr=1e-2,
        weight_decay=0.01,
        warmup_epochs=0.5,
        clip_grad=1.0,
        checkpoint_every=2,
        log_every=100,
    )
    return TrainConfig(**{**base, **kw})


def _train(tmp_path, tiny_prepared, name, cfg=None, **kw):
    torch.manual_seed(0)
    model = Tiny()
    ds = load_image_set(
        tiny_prepared, "train", ViewConfig(size=8, crop_scale=(0.5, 1.0)), train=True, seed=1
    )
    summary = train(
        CETask(model, **kw),
        ds,
        cfg or _cfg(),
        seed=1,
        run_dir=tmp_path / name,
        device=torch.device("cpu"),
    )
    return model, summary


def test_views_are_deterministic_per_seed_epoch_index(tiny_prepared):
    view = ViewConfig(size=8, crop_scale=(0.3, 1.0))
    a = load_image_set(tiny_prepared, "train", view, train=True, seed=3)
    b = load_image_set(tiny_prepared, "train", view, train=True, seed=3)
    assert torch.equal(a[5][0], b[5][0])
    a.set_epoch(1)
    assert not torch.equal(a[5][0], b[5][0])
    ev = load_image_set(tiny_prepared, "val", view, train=False)
    x, y = ev[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8  # float on the device, batched
    assert int(y) == int(tiny_prepared.labels("val")[0])


def test_epoch_batches():
    a = epoch_batches(20, 6, seed=0, epoch=0)
    assert len(a) == 3 and all(len(b) == 6 for b in a)
    assert a == epoch_batches(20, 6, seed=0, epoch=0)
    assert a != epoch_batches(20, 6, seed=0, epoch=1)
    ev = epoch_batches(20, 6, seed=0, epoch=0, shuffle=False, drop_last=False)
    assert sum(ev, []) == list(range(20))


def test_label_fractions_stratified_nested_reproducible():
    labels = np.repeat(np.arange(5), [40, 40, 40, 20, 60])
    small = label_fraction_indices(labels, 0.1, seed=7)
    large = label_fraction_indices(labels, 0.5, seed=7)
    assert set(small) <= set(large)
    assert np.bincount(labels[small]).tolist() == [4, 4, 4, 2, 6]
    assert np.bincount(labels[large]).tolist() == [20, 20, 20, 10, 30]
    assert np.array_equal(small, label_fraction_indices(labels, 0.1, seed=7))
    assert not np.array_equal(small, label_fraction_indices(labels, 0.1, seed=8))
    assert np.bincount(labels[label_fraction_indices(labels, 0.001, seed=0)]).tolist() == [1] * 5
    assert len(label_fraction_indices(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="fraction 0"):
        label_fraction_indices(labels, 0, seed=0)


def test_training_learns_logs_and_checkpoints(tmp_path, tiny_prepared):
    model, summary = _train(tmp_path, tiny_prepared, "run")
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, summary["steps"] + 1))
    assert {"loss", "ce", "lr", "epoch"} <= set(log[0])
    assert log[-1]["loss"] < log[0]["loss"]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["step"] == summary["steps"]
    assert {"optimizer", "scheduler", "scaler", "rng", "train_config"} <= set(ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)


class Interrupted(Exception):
    pass


def test_resume_after_interruption_is_bit_identical(tmp_path, tiny_prepared):
    full, _ = _train(tmp_path, tiny_prepared, "run_full")
    # 5 steps per epoch, checkpoints every 2 steps: interrupt during step 8 (mid-epoch 2).
    with pytest.raises(Interrupted):
        _train(tmp_path, tiny_prepared, "run_cut", raise_at=7)
    assert load_checkpoint(tmp_path / "run_cut" / "checkpoint.pt")["step"] == 6
    resumed, summary = _train(tmp_path, tiny_prepared, "run_cut")
    assert summary["resumed_from"] == 6
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    a = (tmp_path / "run_full" / "log.jsonl").read_text()
    b = (tmp_path / "run_cut" / "log.jsonl").read_text()
    assert a == b


def test_persistent_workers_see_each_epoch(tiny_prepared):
    """One loader for 3 epochs: 2 persistent workers, whose copies of the set are made once,
    yield exactly the batches of workers=0 in every epoch (each epoch has its own crops)."""
    ds = load_image_set(
        tiny_prepared, "train", ViewConfig(size=8, crop_scale=(0.3, 1.0)), train=True, seed=1
    )

    def passes(workers):
        sampler = EpochBatches()
        loader = epoch_loader(ds, sampler, workers)
        out, iterators = [], set()
        for epoch in range(3):
            sampler.set(epoch, epoch_batches(len(ds), 8, seed=1, epoch=epoch))
            out.append(torch.cat([x for x, _ in loader]))
            iterators.add(id(loader._iterator))  # persistent: one iterator, its workers kept
        return out, loader, iterators

    alone, _, _ = passes(0)
    shared, loader, iterators = passes(2)
    assert loader.persistent_workers and len(iterators) == 1
    assert all(torch.equal(a, b) for a, b in zip(alone, shared, strict=True))
    assert not torch.equal(alone[0], alone[1])  # the epochs' crops differ
    assert ds.epoch == 0  # the epoch travelled with the indices, not via set_epoch


def test_loader_workers_outlive_sigterm_and_stop_with_their_loader(tiny_prepared):
    """A cluster's SIGTERM reaches every process of a job: the loader's workers ignore it and
    keep serving batches; closing_loader stops them, also when its block ends with an error
    (an exception's traceback keeps the loader alive, and multiprocessing would wait at exit
    for workers that ignore its SIGTERM)."""
    ds = load_image_set(tiny_prepared, "train", ViewConfig(size=8), train=True, seed=1)
    sampler = EpochBatches()
    sampler.set(0, [[i] for i in range(6)])
    loader = epoch_loader(ds, sampler, workers=2)
    with pytest.raises(KeyError, match="the block ends"), closing_loader(loader):
        batches = iter(loader)
        first = next(batches)
        workers = list(batches._workers)
        # Sent from another process, as a cluster's signal is (torch's workers exit quietly on
        # their parent's SIGTERM).
        code = "import os, sys; [os.kill(int(p), 15) for p in sys.argv[1:]]"
        subprocess.run([sys.executable, "-c", code, *(str(w.pid) for w in workers)], check=True)
        rest = list(batches)  # without the shield: "DataLoader worker ... killed by signal"
        assert len([first, *rest]) == 6 and all(w.is_alive() for w in workers)
        raise KeyError("the block ends")
    assert loader._iterator is None and not any(w.is_alive() for w in workers)


def test_training_with_persistent_workers_is_bit_identical(tmp_path, tiny_prepared):
    alone, _ = _train(tmp_path, tiny_prepared, "w0")
    shared, _ = _train(tmp_path, tiny_prepared, "w2", cfg=_cfg(workers=2))
    assert not multiprocessing.active_children()  # the persistent workers ended with the run
    for k, v in alone.state_dict().items():
        assert torch.equal(shared.state_dict()[k], v), k
    assert (tmp_path / "w0/log.jsonl").read_text() == (tmp_path / "w2/log.jsonl").read_text()


def test_compile_is_ignored_on_cpu_with_a_note(tmp_path, tiny_prepared, caplog):
    eager, _ = _train(tmp_path, tiny_prepared, "eager")
    with caplog.at_level("INFO", logger="robustkd.engine.accel"):
        compiled, _ = _train(tmp_path, tiny_prepared, "compiled", cfg=_cfg(compile=True))
    assert "compile: true ignored on CPU" in caplog.text
    for k, v in eager.state_dict().items():
        assert torch.equal(compiled.state_dict()[k], v), k


def test_nonfinite_loss_stops_with_step_and_component(tmp_path, tiny_prepared):
    with pytest.raises(NonFiniteError, match=r"step 3 .*\['loss', 'ce'\]"):
        _train(tmp_path, tiny_prepared, "nan", nan_at=3)
    ckpt = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_nonfinite_weights_are_never_saved(tmp_path):
    model = Tiny()
    with torch.no_grad():
        model.net[1].weight[0, 0] = math.inf
    with pytest.raises(NonFiniteError, match="net.1.weight"):
        save_checkpoint(tmp_path / "c.pt", model=model, state={"step": 1})
    assert not list(tmp_path.iterdir())


def test_topk_and_evaluation_repeats(tiny_prepared):
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15]])
    assert topk_correct(logits, torch.tensor([1, 2]), 1) == 1
    assert topk_correct(logits, torch.tensor([1, 2]), 2) == 2
    assert topk_correct(logits, torch.tensor([1, 2]), 5) == 2

    from robustkd.distortions import create_distortion

    model = Tiny()
    ev = load_image_set(tiny_prepared, "val", ViewConfig(size=8), train=False)
    noise = create_distortion({"family": "noise", "sigma": 0.5})
    kw = dict(repeats=4, seed=0, batch_size=7, device=torch.device("cpu"))
    a = evaluate_classifier(model, ev, noise, lambda x: x, **kw)
    b = evaluate_classifier(model, ev, noise, lambda x: x, **kw)
    assert a == b and a["repeats"] == 4 and a["n"] == 15
    blur = create_distortion({"family": "blur", "kernel": 3, "sigma": 1.0})
    assert evaluate_classifier(model, ev, blur, lambda x: x, **kw)["repeats"] == 1


def test_train_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match="'epohcs'"):
        TrainConfig.from_config({"epohcs": 1, "batch_size": 2, "lr": 0.1})
