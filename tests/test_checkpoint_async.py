"""Asynchronous checkpoints (issue 25, point 7): the same file, one write in flight, atomic."""

import pytest
import torch

from robustkd.engine import checkpoint as ckpt_mod
from robustkd.engine.checkpoint import CheckpointWriter, load_checkpoint, save_checkpoint
from robustkd.errors import RobustKDError
from tests import test_engine
from tests.test_engine import Tiny, _cfg, _train

tiny_prepared = test_engine.tiny_prepared  # the fixture


def _state(model):
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    return {"optimizer": opt.state_dict(), "step": 3, "config": {"a": [1, 2.5, "x"]}}


def test_async_write_gives_the_bytes_of_the_sync_one(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    state = _state(model)
    (tmp_path / "sync").mkdir()
    (tmp_path / "async").mkdir()
    save_checkpoint(tmp_path / "sync" / "checkpoint.pt", model=model, state=state)
    with CheckpointWriter(asynchronous=True) as writer:
        writer.save(tmp_path / "async" / "checkpoint.pt", model=model, state=state)
        with torch.no_grad():  # the loop goes on: the write holds a copy
            for p in model.parameters():
                p.add_(1.0)
    a = (tmp_path / "sync" / "checkpoint.pt").read_bytes()
    b = (tmp_path / "async" / "checkpoint.pt").read_bytes()
    assert a == b


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = Tiny()
    path = tmp_path / "checkpoint.pt"
    writer = CheckpointWriter(asynchronous=True)
    writer.save(path, model=model, state={"step": 1})
    writer.wait()
    before = path.read_bytes()
    real_save = torch.save

    def dies_mid_write(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", dies_mid_write)
    writer.save(path, model=model, state={"step": 2})
    with pytest.raises(RobustKDError):
        writer.wait()
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_async_checkpoints_resume_as_sync_ones(tmp_path, tiny_prepared):
    """The loop with checkpoint_async: same log and weights; cut at step 7, resumed from the
    async checkpoint, the same final weights as an uninterrupted sync run."""

    full, _ = _train(tmp_path, tiny_prepared, "sync")
    cfg = _cfg(checkpoint_async=True)
    same, _ = _train(tmp_path, tiny_prepared, "async", cfg=cfg)
    for a, b in zip(full.state_dict().values(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    sync_log = (tmp_path / "sync" / "log.jsonl").read_text()
    assert (tmp_path / "async" / "log.jsonl").read_text() == sync_log
    with pytest.raises(BaseException):  # noqa: B017 (the test task's own interruption)
        _train(tmp_path, tiny_prepared, "cut", cfg=cfg, raise_at=7)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 6
    resumed, summary = _train(tmp_path, tiny_prepared, "cut", cfg=cfg)
    assert summary["resumed_from"] == 6
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
