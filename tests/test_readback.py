"""Files the pipeline reads back: a corrupt one names itself; checkpoints never run code.

Covers a truncated checkpoint (set aside, training starts afresh and ends as an uninterrupted
run), a half-written training log line, a checkpoint carrying a pickled callable (refused,
nothing run), and truncated weights, metrics, arrays and manifests (errors naming the file).
"""

import logging
import random

import numpy as np
import pytest
import torch

from robustkd.craft.evaluate import load_corrupted
from robustkd.craft.models import create_cifar_model
from robustkd.craft.teacher_job import load_teacher
from robustkd.data import PreparedWriter
from robustkd.data.prepared import PreparedDataset
from robustkd.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from robustkd.engine.inputs import read_metrics
from robustkd.errors import RobustKDError
from tests.test_engine import Interrupted, Tiny, _train


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory):
    """test_engine's 3-class dataset: the class is the image's dominant colour channel."""
    root = tmp_path_factory.mktemp("prep") / "ds"
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 80, (60, 12, 12, 3), dtype=np.uint8)
    labels = [i % 3 for i in range(60)]
    for i, c in enumerate(labels):
        imgs[i, ..., c] += 150
    with PreparedWriter(root, ["r", "g", "b"], provenance={"rule": "test"}) as w:
        w.add_array("train", imgs[:45], labels[:45])
        w.add_array("val", imgs[45:], labels[45:])
    return PreparedDataset(root)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _assert_same_run(tmp_path, a, b, model_a, model_b):
    for k, v in model_a.state_dict().items():
        assert torch.equal(model_b.state_dict()[k], v), k
    assert (tmp_path / a / "log.jsonl").read_text() == (tmp_path / b / "log.jsonl").read_text()


def test_a_truncated_checkpoint_is_set_aside_and_training_starts_afresh(
    tmp_path, tiny_prepared, caplog
):
    full, _ = _train(tmp_path, tiny_prepared, "full")
    with pytest.raises(Interrupted):
        _train(tmp_path, tiny_prepared, "cut", raise_at=7)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    _truncate(ckpt)  # as a kill during a copy or a full disk leaves it
    truncated = ckpt.read_bytes()

    with caplog.at_level(logging.WARNING):
        rerun, summary = _train(tmp_path, tiny_prepared, "cut")
    assert summary["resumed_from"] is None
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(ckpt) in warning and "checkpoint.pt.unreadable" in warning
    assert (tmp_path / "cut" / "checkpoint.pt.unreadable").read_bytes() == truncated
    _assert_same_run(tmp_path, "full", "cut", full, rerun)


def test_a_half_written_log_line_does_not_block_the_resume(tmp_path, tiny_prepared, caplog):
    full, _ = _train(tmp_path, tiny_prepared, "full")
    with pytest.raises(Interrupted):
        _train(tmp_path, tiny_prepared, "cut", raise_at=7)
    with open(tmp_path / "cut" / "log.jsonl", "a") as fh:
        fh.write('{"step": 7, "loss": 0.4')  # killed mid-write
    with caplog.at_level(logging.WARNING):
        rerun, summary = _train(tmp_path, tiny_prepared, "cut")
    assert summary["resumed_from"] == 6
    assert str(tmp_path / "cut" / "log.jsonl") in caplog.text
    _assert_same_run(tmp_path, "full", "cut", full, rerun)


class _Planted:
    """Unpickling this creates a file: what a planted checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_carrying_a_pickled_callable_is_refused(tmp_path, tiny_prepared):
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "checkpoint.pt"
    torch.save({"model": Tiny().state_dict(), "step": 2, "hook": _Planted(marker)}, ckpt)
    with pytest.raises(RobustKDError, match=f"{ckpt}: refused to load checkpoint") as info:
        load_checkpoint(ckpt)
    assert "io.open" in str(info.value)  # the callable it would have run
    # The training loop refuses it too, rather than overwrite it or train on.
    with pytest.raises(RobustKDError, match=str(ckpt)):
        _train(tmp_path, tiny_prepared, "run")
    assert not marker.exists()
    assert ckpt.is_file() and not (run / "checkpoint.pt.unreadable").exists()


def test_a_checkpoint_of_an_older_robustkd_is_set_aside_unloaded(tmp_path, caplog):
    ckpt = tmp_path / "checkpoint.pt"
    # The format before weights_only: NumPy's RNG state as an array.
    torch.save({"model": Tiny().state_dict(), "rng": {"numpy": np.random.get_state()}}, ckpt)
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(ckpt) is None
    assert f"{ckpt}: written by an older robustkd" in caplog.text
    assert (tmp_path / "checkpoint.pt.unreadable").is_file() and not ckpt.exists()


def test_checkpoints_hold_only_plain_types_and_restore_every_generator(tmp_path):
    model = Tiny()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    save_checkpoint(tmp_path / "c.pt", model=model, state={"step": 4, "config": {"a": [1, 2]}})
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)  # no allow-list needed
    expected = (random.random(), np.random.standard_normal(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(ckpt["rng"])
    got = (random.random(), np.random.standard_normal(), torch.rand(2))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
    assert capture_rng()["numpy"]["key"].dtype == torch.int64


@pytest.fixture
def packed(tmp_path):
    root = tmp_path / "ds"
    images = np.zeros((30, 8, 8, 3), dtype=np.uint8)
    with PreparedWriter(root, ["a", "b"], provenance={"rule": "test"}) as w:
        w.add_array("train", images, [i % 2 for i in range(30)])
    return root


def test_truncated_weights_metrics_arrays_and_manifests_name_the_file(tmp_path, packed):
    # Weights (a teacher written by save_weights), truncated.
    spec = {"model": {"depth": 8, "width": 4}}
    weights = tmp_path / "teacher.pth"
    torch.save(create_cifar_model(spec["model"], 3).state_dict(), weights)
    _truncate(weights)
    with pytest.raises(RobustKDError, match=f"{weights}: unreadable teacher weights"):
        load_teacher(spec, weights, 3)
    # Weights of another configuration.
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(RobustKDError, match=f"{weights}: teacher weights does not fit"):
        load_teacher(spec, weights, 3)

    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"top1": 71.')
    with pytest.raises(RobustKDError, match=f"{metrics}: unreadable metrics file"):
        read_metrics(metrics)

    array = tmp_path / "gaussian_noise.npy"
    np.save(array, np.zeros((10, 8, 8, 3), dtype=np.uint8))
    _truncate(array)
    with pytest.raises(RobustKDError, match=f"{array}: unreadable CIFAR-10-C array"):
        load_corrupted({"gaussian_noise": array}, np.zeros(2, dtype=np.int64), [1, 2, 3, 4, 5])

    packed_array = next((packed / "arrays").glob("*.npy"))
    _truncate(packed_array)
    with pytest.raises(RobustKDError, match=f"{packed_array}: unreadable prepared array"):
        PreparedDataset(packed).image(0)

    manifest = packed / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines[:5], lines[5][:7]]) + "\n")  # cut mid-row
    with pytest.raises(RobustKDError, match=f"{manifest}, line 6: malformed row"):
        PreparedDataset(packed)
