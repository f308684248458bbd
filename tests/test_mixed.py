"""The ``mixed`` distortion (issue 17): seeded, resume-exact draws at the configured rates,
each image distorted by the setting drawn for it, per-step counts in the training log, and its
config entry (names expanded, bad entries named)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from robustkd.config import distortion_entry, load_config
from robustkd.distortions import batch_shard, create_distortion, seeded_generator
from robustkd.distortions.mixed import CLEAN, COUNT_PREFIX, MixedDistortion, draw_counts
from robustkd.errors import ConfigError

SETTINGS = {
    "mask-0.90": {"family": "mask", "p": 0.9},
    "noise-0.5": {"family": "noise", "sigma": 0.5},
    "blur-5-0.7": {"family": "blur", "kernel": 5, "sigma": 0.7, "stands_for": "blur-21-5"},
}


def _mixed(**kw):
    return create_distortion({"family": "mixed", "settings": SETTINGS, **kw})


def _images(b=16, seed=0):
    return torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_draws_are_a_function_of_the_generator_state():
    """Same (seed, epoch, step) keys, as a resumed step uses them: same draws and images."""
    x, mixed = _images(), _mixed(include_clean=True)
    a = mixed(x, seeded_generator("cpu", 3, 1, 7))
    draw_a = mixed.last_draw.clone()
    again = _mixed(include_clean=True)  # a fresh process after a resume builds it anew
    b = again(x, seeded_generator("cpu", 3, 1, 7))
    assert torch.equal(a, b) and torch.equal(draw_a, again.last_draw)
    c = mixed(x, seeded_generator("cpu", 3, 1, 8))  # the next step draws anew
    assert not torch.equal(draw_a, mixed.last_draw) and not torch.equal(a, c)


def test_each_image_gets_the_setting_drawn_for_it():
    x, mixed = _images(64), _mixed(include_clean=True)
    out = mixed(x, seeded_generator("cpu", 0))
    blur = create_distortion({"family": "blur", "kernel": 5, "sigma": 0.7})(x)
    names = mixed.names
    assert names == ("mask-0.90", "noise-0.5", "blur-5-0.7", CLEAN)
    for i, k in enumerate(mixed.last_draw.tolist()):
        if names[k] == CLEAN:
            assert torch.equal(out[i], x[i])
        elif names[k] == "blur-5-0.7":
            assert torch.equal(out[i], blur[i])
        elif names[k] == "mask-0.90":  # exactly int(8 * 8 * 0.9) = 57 positions zeroed
            assert int((out[i] == 0).all(dim=0).sum()) == 57
        else:  # noise: changed everywhere and clipped to [0, 1]
            assert (out[i] != x[i]).float().mean() > 0.5 and out[i].min() >= 0 and out[i].max() <= 1
    assert set(mixed.last_draw.tolist()) == set(range(4))  # 64 images cover all 4 settings


def test_rates_are_the_configured_ones_chi_square():
    """400 steps of 64 images at rates 3:1:1:1 (clean included), fixed seeds.

    Chi-square goodness of fit of the 25,600 draws against the configured rates: at this
    seed the statistic is far below the 0.1 % critical value; a wrong rate (e.g. uniform)
    would give chi2 in the thousands (expected counts differ by ~4,000).
    """
    rates = {"mask-0.90": 3, "noise-0.5": 1, "blur-5-0.7": 1, CLEAN: 1}
    mixed = _mixed(include_clean=True, rates=rates)
    x = torch.zeros(64, 3, 4, 4)
    counts = np.zeros(4)
    for step in range(400):
        mixed(x, seeded_generator("cpu", 0, 0, step))
        counts += np.array([int(c) for c in mixed.last_counts().values()])
    expected = np.array([3, 1, 1, 1]) / 6 * counts.sum()
    chi2, p = stats.chisquare(counts, expected)
    assert counts.sum() == 400 * 64 and (counts > 0).all()
    assert p > 1e-3, (counts, expected, chi2)
    _, p_uniform = stats.chisquare(counts, np.full(4, counts.sum() / 4))
    assert p_uniform < 1e-6  # the test has power against the default rates


def test_a_zero_rate_is_never_drawn_and_uniform_is_the_default():
    mixed = _mixed(rates={"mask-0.90": 1, "noise-0.5": 0, "blur-5-0.7": 1})
    mixed(torch.zeros(256, 3, 4, 4), seeded_generator("cpu", 1))
    assert int(mixed.last_counts()["noise-0.5"]) == 0
    assert torch.allclose(_mixed().probabilities(), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_data_parallel_slices_see_the_single_process_draw():
    x, mixed = _images(8), _mixed(include_clean=True)
    full = mixed(x, seeded_generator("cpu", 5))
    for rank in range(2):
        with batch_shard(rank, 2):
            part = mixed(x[rank * 4 : (rank + 1) * 4], seeded_generator("cpu", 5))
        assert torch.equal(part, full[rank * 4 : (rank + 1) * 4])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rates": {"mask-0.90": 1}}, "must name exactly the settings"),
        ({"rates": {"mask-0.90": -1, "noise-0.5": 1, "blur-5-0.7": 1}}, "rates.mask-0.90"),
        ({"include_clean": "yes"}, "include_clean"),
    ],
)
def test_bad_parameters_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        _mixed(**kw)
    with pytest.raises(ValueError, match="non-mixed"):
        create_distortion({"family": "mixed", "settings": {"m": {"family": "mixed"}}})


def test_training_log_records_the_images_per_setting_of_every_step(tmp_path):
    from robustkd.engine.data import ViewConfig, load_image_set
    from robustkd.engine.finetune import FinetuneTask
    from robustkd.engine.loop import train
    from tests.test_engine import Tiny, _cfg
    from tests.test_steplog import _prepared

    torch.manual_seed(0)
    ds = load_image_set(_prepared(tmp_path), "train", ViewConfig(size=8), train=True, seed=1)
    mixed = _mixed(include_clean=True)
    task = FinetuneTask(Tiny(), mixed, lambda v: v)
    cfg = _cfg(epochs=2, checkpoint_every=None, log_every=3)
    train(task, ds, cfg, seed=1, run_dir=tmp_path / "r", device=torch.device("cpu"))
    lines = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert len(steps) == 10
    keys = [COUNT_PREFIX + n for n in mixed.names]
    for x in steps:
        assert sum(x[k] for k in keys) == cfg.batch_size, x
    # The counts of step 5 (0-based 4) are those of that step's generator.
    mixed(torch.zeros(8, 3, 8, 8), seeded_generator("cpu", 1, 0, 4))
    assert [steps[4][k] for k in keys] == [int(c) for c in mixed.last_counts().values()]
    assert draw_counts(None) == {} and draw_counts(mixed).keys() == set(keys)


def test_config_entry_names_its_settings_and_defaults_to_table1(repo_root):
    cfg = load_config(repo_root / "config/config.yaml", repo_root / "config/demo.yaml")
    entry = distortion_entry(cfg, "mixed")
    assert list(entry["settings"]) == cfg["experiments"]["table1"]["distortions"]
    assert entry["settings"]["blur-9-1.3"]["kernel"] == 9
    built = create_distortion({k: v for k, v in entry.items() if k != "stands_for"})
    assert isinstance(built, MixedDistortion) and len(built.names) == 6
    assert distortion_entry(cfg, "mask-0.90") == cfg["distortions"]["mask-0.90"]


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("distortions:\n  mixed: {family: mixed, settings: [mask-0.90, nope-1]}\n", "nope-1"),
        (
            "distortions:\n  mixed: {family: mixed, settings: [mask-0.90],"
            " rates: {mask-0.90: 1, clean: 1}}\n",
            "distortions.mixed.rates",
        ),
        ("distortions:\n  mixed: {family: mixed, kernel: 3}\n", "distortions.mixed"),
        ("experiments:\n  table4: {train: mask-0.90}\n", "experiments.table4.train"),
    ],
)
def test_bad_mixed_config_names_the_key(repo_root, tmp_path, overlay, message):
    path = Path(tmp_path / "bad.yaml")
    path.write_text(overlay)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(repo_root / "config/config.yaml", path)
