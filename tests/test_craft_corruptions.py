"""The CIFAR-10-C style corruption suite: registry, determinism, ranges, severity ordering."""

import numpy as np
import pytest
import torch

from robustkd.craft.corruptions import (
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    CorruptionMix,
    available_corruptions,
    corruption_family,
    create_corruption,
    frost_texture,
    plasma_fractal,
    to_uint8,
)
from robustkd.data.synthetic import draw_image
from robustkd.distortions import Distortion, seeded_generator

ALL = available_corruptions()

# Corruptions whose published 32x32 parameters are not ordered by pixel distance. For each,
# what does grow with severity is asserted in test_non_monotone_corruptions_are_documented.
NON_MONOTONE = {
    # The affine jitter shrinks (2.56 -> 0.96 px) while the local elastic displacement grows:
    # in pixel distance, severity 1 is the farthest.
    "elastic_transform": "affine jitter shrinks with severity",
    # More blur (sigma .05/.25/.4 at 1 pass) smooths the swapped pixels back towards the image;
    # the second pass of swaps (severities 4-5) is what moves it further.
    "glass_blur": "extra blur partly undoes the swaps",
    # Image weight falls (1 -> .75) as frost weight rises: on bright images the two cancel.
    "frost": "image darkening offsets the added frost",
    # An extra corruption: severities 1-2 desaturate, 3-5 oversaturate.
    "saturate": "desaturates, then saturates",
}


@pytest.fixture(scope="module")
def images():
    """16 miniature-CIFAR-like images (the demo's generator), (16, 3, 32, 32) in [0, 1]."""
    rng = np.random.default_rng(0)
    arr = np.stack([draw_image(rng, i % 10, 10, 32) for i in range(16)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def test_registry_has_the_benchmark_and_extras():
    assert ALL == [*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS]
    assert len(BENCHMARK_CORRUPTIONS) == 15
    assert {corruption_family(c) for c in ALL} == {"noise", "blur", "weather", "digital"}
    with pytest.raises(ValueError, match="unknown corruption 'fogg'"):
        create_corruption("fogg", 1)
    with pytest.raises(ValueError, match="severity must be 1-5"):
        create_corruption("fog", 6)
    c = create_corruption("snow", 3)
    assert isinstance(c, Distortion) and c.describe() == {"family": "snow", "severity": 3}
    assert c.c == (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9)  # the published parameters


def test_published_parameters_spot_checks():
    assert create_corruption("gaussian_noise", 4).c == 0.09
    assert create_corruption("shot_noise", 1).c == 500
    assert create_corruption("defocus_blur", 5).c == (1.5, 0.1)
    assert create_corruption("motion_blur", 5).c == (9, 2.5)
    assert create_corruption("jpeg_compression", 5).c == 40
    assert create_corruption("pixelate", 2).c == 0.9
    assert create_corruption("elastic_transform", 2).c == (0.05, 0.2, 0.07)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_given_seed_and_in_range(name, images):
    for severity in (1, 5):
        c = create_corruption(name, severity)
        a = c(images, seeded_generator("cpu", 0, severity))
        b = c(images, seeded_generator("cpu", 0, severity))
        assert a.shape == images.shape and a.dtype == images.dtype
        assert torch.equal(a, b), f"{name} {severity}: not deterministic"
        assert float(a.min()) >= 0 and float(a.max()) <= 1
        assert not torch.equal(a, images), f"{name} {severity}: no change"
        other = c(images, seeded_generator("cpu", 1, severity))
        assert torch.equal(a, other) == (not c.is_random), f"{name}: is_random is wrong"


def _distance(name, images):
    """Mean RMSE from the clean images per severity, with the same random draws."""
    out = []
    for s in range(1, 6):
        x = create_corruption(name, s)(images, seeded_generator("cpu", 7))
        out.append(float(((x - images) ** 2).mean(dim=(1, 2, 3)).sqrt().mean()))
    return np.array(out)


@pytest.mark.parametrize("name", [c for c in ALL if c not in NON_MONOTONE])
def test_severity_monotone_in_distance(name, images):
    d = _distance(name, images)
    # Non-decreasing (motion blur's severities 3 and 4 differ only in taps of weight < 1e-9).
    assert np.all(np.diff(d) >= -1e-4), f"{name}: distances {d}"
    assert d[-1] > d[0]


def test_non_monotone_corruptions_are_documented(images):
    d = {name: _distance(name, images) for name in NON_MONOTONE}
    # Elastic: the shrinking affine jitter dominates the pixel distance.
    assert np.all(np.diff(d["elastic_transform"]) < 0)
    # Glass blur: the second pass of swaps (severities 4, 5) moves it furthest.
    assert d["glass_blur"][3:].min() > d["glass_blur"][:3].max()
    # Frost: the three mildest severities are ordered; the strongest still differ from clean.
    assert np.all(np.diff(d["frost"][:3]) > 0) and d["frost"].min() > 0.05
    assert d["saturate"][1] > d["saturate"][2]


def test_to_uint8_truncates_like_numpy():
    x = torch.tensor([0.0, 1 / 255, 0.5, 254.7 / 255, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 1, 127, 254, 255]


def test_plasma_and_frost_textures():
    g = seeded_generator("cpu", 3)
    p = plasma_fractal(2, 32, 3.0, g)
    assert p.shape == (2, 32, 32) and float(p.min()) == 0 and float(p.max()) == 1
    assert not torch.equal(p[0], p[1])
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(1, 30, 3.0, g)
    t = frost_texture(0, 64)
    assert t.shape == (64, 64, 3) and 0 <= t.min() and t.max() <= 1
    assert np.array_equal(t, frost_texture(0, 64)) and not np.array_equal(t, frost_texture(1, 64))


def test_corruption_mix_draws_per_image_and_is_deterministic(images):
    mix = CorruptionMix(["gaussian_noise", "contrast"], [1, 5])
    a = mix(images, seeded_generator("cpu", 0))
    assert torch.equal(a, mix(images, seeded_generator("cpu", 0)))
    assert not torch.equal(a, mix(images, seeded_generator("cpu", 1)))
    # Every image is one of the four (corruption, severity) versions of itself.
    contrast = {s: create_corruption("contrast", s)(images) for s in (1, 5)}
    noisy = (a - images).abs().amax(dim=(1, 2, 3)) > 0
    assert noisy.all()
    is_contrast = torch.stack(
        [(a - contrast[s]).abs().amax(dim=(1, 2, 3)) < 1e-6 for s in (1, 5)]
    ).any(0)
    assert 0 < int(is_contrast.sum()) < len(images)
    with pytest.raises(ValueError, match="at least one"):
        CorruptionMix([])
