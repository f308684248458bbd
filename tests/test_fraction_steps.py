"""Fig 3's floor on optimizer steps (``experiments.fig3.min_steps``): a label fraction too small
for it in the configured epochs trains for more epochs, its warmup stretched in the same ratio.

Expectations are worked by hand: an epoch makes ``images // batch`` steps (at least 1), the
batch shrinking to a set smaller than it, and a run makes whole epochs.
"""

from __future__ import annotations

import json

import pytest

from robustkd.engine.optim import TrainConfig, stretch_epochs
from robustkd.labelfractions import fraction_batch, fraction_min_steps, fraction_run_epochs
from robustkd.plan import parse_dry_run, plan_jobs
from tests.test_label_fractions import finetune_tiny
from tests.test_plan import CONFIG, DRY_RUN, SIZES


@pytest.mark.parametrize(
    ("images", "epochs", "min_steps", "expected"),
    [
        (60, 6, 100, 100),  # one batch of 60: 1 step an epoch, 100 epochs
        (150, 6, 100, 50),  # 150 // 64 = 2 steps an epoch
        (750, 6, 100, 10),  # 750 // 64 = 11 steps an epoch: ceil(100 / 11) = 10 (110 steps)
        (1500, 6, 100, 6),  # 23 steps an epoch: 138 steps, above the floor
        (60, 6, 0, 6),  # no floor
        (60, 6, 6, 6),  # exactly the floor
        (60, 6, 7, 7),
    ],
)
def test_epochs_under_the_floor_by_hand(images, epochs, min_steps, expected):
    assert fraction_run_epochs(images, 64, epochs, min_steps) == expected


def test_the_batch_shrinks_to_a_small_set_and_to_a_multiple_of_the_processes():
    assert fraction_batch(60, 64) == 60
    assert fraction_batch(1500, 64) == 64
    assert fraction_batch(10, 64, world=3) == 9  # 10 - 10 % 3
    assert fraction_batch(2, 64, world=4) == 4  # at least one image per process
    # 10 images at batch 9 on 3 processes: 1 step an epoch, so 5 epochs for 5 steps
    assert fraction_run_epochs(10, 64, 1, 5, world=3) == 5


@pytest.mark.parametrize(
    ("images", "min_steps", "named"), [(0, 10, "at least one image"), (10, -1, "min_steps")]
)
def test_bad_arguments_are_named(images, min_steps, named):
    with pytest.raises(ValueError, match=named):
        fraction_run_epochs(images, 64, 6, min_steps)


def test_stretching_keeps_the_share_of_warmup():
    cfg = TrainConfig(epochs=6, batch_size=60, lr=1e-3, warmup_epochs=0.5)
    stretched = stretch_epochs(cfg, 100)
    assert stretched.epochs == 100
    assert stretched.warmup_epochs == pytest.approx(0.5 * 100 / 6)  # 8.33 epochs of one step
    assert stretched.lr == cfg.lr and stretched.batch_size == cfg.batch_size
    assert stretch_epochs(cfg, 6) is cfg
    with pytest.raises(ValueError, match="epochs must be at least 1, not 0"):
        stretch_epochs(cfg, 0)


def test_the_floor_is_read_from_the_config():
    assert fraction_min_steps({"experiments": {"fig3": {"min_steps": 100}}}) == 100
    assert fraction_min_steps({"experiments": {"fig3": {"fractions": [1.0]}}}) == 0
    assert fraction_min_steps({}) == 0


def test_a_finetune_run_makes_the_floor_of_steps_with_a_stretched_warmup(tmp_path):
    # 0.5 keeps 3 images per class: 6 images, batch 6, one step an epoch; 2 epochs, floor 5
    train = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 0.8, "log_every": 1}
    run = finetune_tiny(tmp_path, 0.5, train, min_steps=5)
    record = json.loads((run / "provenance.json").read_text())
    assert record["config"]["train"]["epochs"] == 5
    assert record["config"]["train"]["batch_size"] == 6
    assert record["config"]["train"]["warmup_epochs"] == pytest.approx(2.0)  # 0.8 * 5 / 2
    assert record["train"]["steps"] == 5
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # warmup of 2 steps (5e-4, 1e-3), then the cosine over the other 3 steps from progress 0:
    # 1e-3 * 0.5 * (1 + cos(pi * k / 3)) for k = 0, 1, 2
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert [s["lr"] for s in steps] == pytest.approx([5e-4, 1e-3, 1e-3, 7.5e-4, 2.5e-4])


def test_the_plan_counts_the_stretched_epochs():
    config = {**CONFIG, "experiments": {**CONFIG["experiments"]}}
    config["experiments"]["fig3"] = {**CONFIG["experiments"]["fig3"], "min_steps": 40}
    config["training"] = {
        **CONFIG["training"],
        "finetune": {**CONFIG["training"]["finetune"], "batch_size": 32},
    }
    planned = {j.rule: j for j in plan_jobs(parse_dry_run(DRY_RUN), config, SIZES)}
    # 0.1 keeps 100 images: 3 steps an epoch, 14 epochs; 0.5 keeps 500: 15 steps, 5 epochs
    assert planned["finetune_fractions"].train_images == (14 * 100 + 5 * 500) * 2
    assert "imagenet100 frac 0.1 x14 ep x2 seeds" in planned["finetune_fractions"].runs
    # the floor is Fig 3's: the full-label fine-tuning keeps its epochs
    assert planned["transfer"].train_images == 5 * 500 * 2
