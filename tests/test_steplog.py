"""The step log keeps loss components on the device and checks them where it is flushed."""

import io
import json
import logging
import math

import pytest
import torch

from robustkd.engine.checkpoint import NonFiniteError
from robustkd.engine.steplog import StepLog


def _losses(device, *values):
    names = ("loss", "ce")
    return {k: torch.tensor(v, device=device) for k, v in zip(names, values, strict=True)}


def test_adding_steps_never_copies_to_the_host():
    """Meta tensors have no data: any host copy (.cpu(), .item(), bool()) would raise."""
    log = StepLog(io.StringIO())
    for step in range(5):
        log.add(step, 0, 0.1, _losses("meta", 1.0, 2.0))
    assert len(log.pending) == 5
    with pytest.raises(NotImplementedError):  # the check is real: flushing meta must fail
        log.flush()


def test_flush_writes_the_lines_a_per_step_log_wrote():
    out = io.StringIO()
    log = StepLog(out)
    for step in range(3):
        log.add(step, step // 2, 0.5 / (step + 1), _losses("cpu", step + 1.0, 2.0 * step))
    last = log.flush()
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert lines == [
        {"step": s + 1, "epoch": s // 2, "lr": 0.5 / (s + 1), "loss": s + 1.0, "ce": 2.0 * s}
        for s in range(3)
    ]
    assert last == {"loss": 3.0, "ce": 4.0}
    assert log.flush() == last and out.getvalue().count("\n") == 3  # nothing pending: no-op


def test_first_non_finite_step_stops_the_run_and_later_lines_are_not_written():
    out = io.StringIO()
    log = StepLog(out, checkpoint_path="run/checkpoint.pt")
    log.add(0, 0, 0.1, _losses("cpu", 1.0, 1.0))
    log.add(1, 0, 0.1, _losses("cpu", math.nan, 1.0))
    log.add(2, 1, 0.1, _losses("cpu", math.inf, math.inf))
    with pytest.raises(NonFiniteError, match=r"step 1 \(epoch 0\).*\['loss'\].*run/checkpoint"):
        log.flush()
    assert [json.loads(ln)["step"] for ln in out.getvalue().splitlines()] == [1]


def test_a_non_finite_loss_before_any_checkpoint_says_there_is_none():
    """Issue 26: it said "the last checkpoint (<path>) holds finite weights" with no file."""
    log = StepLog(io.StringIO(), checkpoint_path="run/checkpoint.pt")
    log.add(0, 0, 0.1, _losses("cpu", math.nan, 1.0))
    with pytest.raises(NonFiniteError) as info:
        log.flush()
    msg = str(info.value)
    assert "holds finite weights" not in msg
    assert "no checkpoint was written before it (it would be run/checkpoint.pt)" in msg
    assert "rerun starts afresh" in msg and "Lower the learning rate or set clip_grad" in msg


def test_a_non_finite_loss_after_a_checkpoint_names_its_step():
    log = StepLog(io.StringIO(), checkpoint_path="run/checkpoint.pt", checkpoint_step=40)
    log.add(40, 2, 0.1, _losses("cpu", 1.0, 1.0))
    log.checkpoint_step = 41
    log.add(41, 2, 0.1, _losses("cpu", math.inf, 1.0))
    with pytest.raises(NonFiniteError, match=r"checkpoint \(run/checkpoint.pt\), of step 41, "):
        log.flush()


def test_the_loop_says_whether_a_checkpoint_exists_when_the_loss_goes_nan(tmp_path):
    from tests.test_engine import _train

    prepared = _prepared(tmp_path)
    with pytest.raises(NonFiniteError, match="no checkpoint was written before it") as info:
        _train(tmp_path, prepared, "early", nan_at=1)  # checkpoint_every=2: none yet
    assert not (tmp_path / "early" / "checkpoint.pt").exists()
    assert "holds finite weights" not in str(info.value)
    with pytest.raises(NonFiniteError, match=r"checkpoint \(.*checkpoint.pt\), of step 2, "):
        _train(tmp_path, prepared, "late", nan_at=3)
    assert (tmp_path / "late" / "checkpoint.pt").is_file()


def test_components_are_averaged_over_ranks_once_per_flush():
    calls = []

    def reduce(v):
        calls.append(tuple(v.shape))
        return v / 2  # as if another rank had logged zeros

    out = io.StringIO()
    log = StepLog(out, reduce)
    for step in range(4):
        log.add(step, 0, 0.1, _losses("cpu", 2.0, 4.0))
    assert log.flush() == {"loss": 1.0, "ce": 2.0}
    assert calls == [(4, 2)]  # one collective for the 4 steps


def test_the_loop_reads_losses_only_at_boundaries_and_prints_an_eta(tmp_path, caplog, monkeypatch):
    from robustkd.engine.data import ViewConfig, load_image_set
    from robustkd.engine.loop import train
    from tests.test_engine import CETask, Tiny, _cfg, tiny_prepared  # noqa: F401

    sizes = []
    real_flush = StepLog.flush

    def counting_flush(self):
        sizes.append(len(self.pending))
        return real_flush(self)

    monkeypatch.setattr(StepLog, "flush", counting_flush)
    caplog.set_level(logging.INFO, logger="robustkd")
    torch.manual_seed(0)
    prepared = _prepared(tmp_path)
    ds = load_image_set(prepared, "train", ViewConfig(size=8), train=True, seed=1)
    cfg = _cfg(epochs=2, checkpoint_every=None, log_every=4)
    summary = train(
        CETask(Tiny()), ds, cfg, seed=1, run_dir=tmp_path / "r", device=torch.device("cpu")
    )
    assert sum(sizes) == summary["steps"] == 10  # every step logged once
    assert max(sizes) == 4  # 4 steps read in one host copy (log_every), not one by one
    progress = [r.getMessage() for r in caplog.records if "step 4/10" in r.getMessage()]
    assert progress and "ETA " in progress[0], [r.getMessage() for r in caplog.records]


def _prepared(tmp_path):
    import numpy as np

    from robustkd.data import PreparedWriter
    from robustkd.data.prepared import PreparedDataset

    rng = np.random.default_rng(0)
    with PreparedWriter(tmp_path / "ds", ["r", "g", "b"], provenance={"rule": "test"}) as w:
        w.add_array(
            "train", rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8), [0, 1, 2, 0] * 10
        )
    return PreparedDataset(tmp_path / "ds")
