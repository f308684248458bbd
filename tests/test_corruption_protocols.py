"""The corruption suite at 224 px in its ImageNet-C parameterisation (make_imagenet_c.py).

Spot checks of deterministic corruptions against values computed by hand from the published
ImageNet-C parameters; the CIFAR-10-C behaviour is pinned by tests/test_craft_corruptions.py.
"""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from robustkd.corruptions import (
    BENCHMARK_CORRUPTIONS,
    PROTOCOLS,
    create_corruption,
    protocol_for_size,
    to_uint8,
)
from robustkd.distortions import seeded_generator


def test_protocols_map_sizes_and_reject_others():
    assert PROTOCOLS == {"cifar10c": 32, "imagenetc": 224}
    assert protocol_for_size(32) == "cifar10c"
    assert protocol_for_size(224) == "imagenetc"
    with pytest.raises(ValueError, match="no corruption protocol is published for 64 px"):
        protocol_for_size(64)
    with pytest.raises(ValueError, match="unknown protocol 'imagenet'"):
        create_corruption("fog", 1, "imagenet")


def test_default_protocol_is_cifar10c_and_params_are_unchanged():
    c = create_corruption("contrast", 1)
    assert c.protocol == "cifar10c" and c.c == 0.75 and c.params() == {"severity": 1}
    i = create_corruption("contrast", 1, "imagenetc")
    assert i.params() == {"severity": 1, "protocol": "imagenetc"}


def test_published_imagenet_c_parameters():
    # make_imagenet_c.py, hendrycks/robustness (severity 1 and 5 of each).
    expected = {
        "gaussian_noise": (0.08, 0.38),
        "shot_noise": (60, 3),
        "impulse_noise": (0.03, 0.27),
        "defocus_blur": ((3, 0.1), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (20, 15)),
        "zoom_blur": ((1.11, 0.01), (1.31, 0.03)),
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        "frost": ((1, 0.4), (0.6, 0.75)),
        "fog": ((1.5, 2), (3, 1.4)),
        "brightness": (0.1, 0.5),
        "contrast": (0.4, 0.05),
        "elastic_transform": ((2, 0.7, 0.1), (0.12, 0.01, 0.02)),
        "pixelate": (0.6, 0.25),
        "jpeg_compression": (25, 7),
    }
    assert set(expected) == set(BENCHMARK_CORRUPTIONS)
    for name, (first, last) in expected.items():
        assert create_corruption(name, 1, "imagenetc").c == first, name
        assert create_corruption(name, 5, "imagenetc").c == last, name


def test_contrast_by_hand():
    # (x - mean) * c + mean per channel; ImageNet-C severity 3: c = 0.2.
    x = torch.zeros(1, 3, 224, 224)
    x[:, :, :, :112] = 1.0  # every channel: half ones, half zeros: mean 0.5
    out = create_corruption("contrast", 3, "imagenetc")(x)
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.6))  # (1 - .5) * .2 + .5
    assert torch.allclose(out[0, :, 0, -1], torch.full((3,), 0.4))  # (0 - .5) * .2 + .5


def test_brightness_by_hand():
    # V of HSV + c (clipped), H and S kept; ImageNet-C severity 5: c = 0.5.
    x = torch.zeros(1, 3, 224, 224)
    x[0, 0], x[0, 1], x[0, 2] = 0.2, 0.1, 0.0  # V = 0.2, S = 1, hue orange
    out = create_corruption("brightness", 5, "imagenetc")(x)
    # V' = 0.7: RGB scaled by 0.7 / 0.2 = 3.5 (H, S fixed): (0.7, 0.35, 0).
    assert torch.allclose(out[0, :, 5, 5], torch.tensor([0.7, 0.35, 0.0]), atol=1e-6)
    grey = torch.full((1, 3, 224, 224), 0.6)
    assert torch.allclose(create_corruption("brightness", 5, "imagenetc")(grey), torch.ones(1))


def test_defocus_blur_by_hand():
    # Severity 1: disk radius 3 (29 pixels with x^2 + y^2 <= 9), alias blur sigma 0.1 (a 3x3
    # Gaussian whose side weights are exp(-50): the identity). An impulse spreads to 1/29.
    x = torch.zeros(1, 3, 224, 224)
    x[0, :, 100, 100] = 1.0
    out = create_corruption("defocus_blur", 1, "imagenetc")(x)[0, 0]
    for dy, dx in [(0, 0), (3, 0), (0, -3), (2, 2), (-2, 2), (1, -2)]:
        assert out[100 + dy, 100 + dx].item() == pytest.approx(1 / 29, rel=1e-5)
    for dy, dx in [(3, 1), (-1, 3), (4, 0), (3, 3)]:
        assert out[100 + dy, 100 + dx].item() == pytest.approx(0.0, abs=1e-9)


def test_gaussian_blur_by_hand():
    # Extra corruption gaussian_blur, severity 1: skimage gaussian, sigma 1, truncate 4: taps
    # -4..4 weighted exp(-t^2 / 2), normalised; an impulse gives w_dy w_dx.
    w = [math.exp(-(t**2) / 2) for t in range(-4, 5)]
    w = [v / sum(w) for v in w]
    x = torch.zeros(1, 3, 224, 224, dtype=torch.float64)
    x[0, :, 50, 60] = 1.0
    out = create_corruption("gaussian_blur", 1, "imagenetc")(x)[0, 1]
    for dy, dx in [(0, 0), (1, 0), (2, 3), (4, -4)]:
        assert out[50 + dy, 60 + dx].item() == pytest.approx(w[dy + 4] * w[dx + 4], rel=1e-9)
    assert out[50 + 5, 60].item() == 0.0


def test_pixelate_by_hand():
    # Severity 5: BOX resize to int(224 * 0.25) = 56 px (4x4 blocks averaged), then back up.
    x = torch.zeros(1, 3, 224, 224)
    x[..., ::2] = 1.0  # 1-pixel stripes: every 4x4 block averages 127.5 levels
    out = to_uint8(create_corruption("pixelate", 5, "imagenetc")(x)).astype(int)
    assert set(np.unique(out)) <= {127, 128}
    # An image constant on 4x4 blocks is left as it is.
    aligned = torch.kron(torch.rand(1, 3, 56, 56), torch.ones(4, 4))
    aligned = torch.round(aligned * 255) / 255
    got = create_corruption("pixelate", 5, "imagenetc")(aligned)
    assert np.array_equal(to_uint8(got), to_uint8(aligned))


def test_jpeg_uses_the_published_quality():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=7)  # ImageNet-C severity 5
    buf.seek(0)
    expected = np.asarray(Image.open(buf).convert("RGB"))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = to_uint8(create_corruption("jpeg_compression", 5, "imagenetc")(x))[0]
    assert np.array_equal(got, expected)


def test_zoom_blur_uses_the_published_zoom_steps():
    # Severity 5: arange(1, 1.31, 0.03): 11 zooms (1.00 ... 1.30) + the image = 12 terms.
    # A one-pixel-wide ring at the border vanishes from every zoom but factor 1, so the
    # border keeps (1 + 1) / 12 of its value.
    x = torch.zeros(1, 1, 224, 224, dtype=torch.float64)
    x[..., 0, :] = 1.0
    out = create_corruption("zoom_blur", 5, "imagenetc")(x)
    assert len(np.arange(1, 1.31, 0.03)) == 11
    assert out[0, 0, 0, 112].item() == pytest.approx(2 / 12, abs=1e-9)


def test_gaussian_noise_scale():
    # Severity 1: sigma 0.08; at x = 0.5 no value is clipped (6 sigma), so std(out - x) = 0.08.
    x = torch.full((4, 3, 224, 224), 0.5)
    out = create_corruption("gaussian_noise", 1, "imagenetc")(x, seeded_generator("cpu", 1))
    assert (out - x).std().item() == pytest.approx(0.08, rel=0.01)


def test_elastic_uses_the_released_size_constant():
    e = create_corruption("elastic_transform", 1, "imagenetc")
    assert e.SCALE == {"cifar10c": 32, "imagenetc": 244}  # 244 as released for ImageNet-C
    assert tuple(v * e.SCALE["imagenetc"] for v in e.c) == pytest.approx((488, 170.8, 24.4))


@pytest.mark.parametrize("name", BENCHMARK_CORRUPTIONS)
def test_every_corruption_runs_at_224_and_is_seeded(name):
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    op = create_corruption(name, 3, "imagenetc")
    a = op(x, seeded_generator("cpu", 4))
    b = op(x, seeded_generator("cpu", 4))
    assert a.shape == x.shape and torch.equal(a, b)
    assert 0 <= a.min().item() and a.max().item() <= 1
    assert (a - x).abs().mean().item() > 1e-3
