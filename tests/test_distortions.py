"""Tests of robustkd.distortions: exact semantics, torchvision equality, determinism, severity."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from robustkd.distortions import (
    Distortion,
    GaussianBlur,
    apply_distortion,
    available_families,
    blur_matrix,
    create_distortion,
    register_distortion,
    seeded_generator,
)

# One representative (paper) setting per family; every family must appear here.
SPECS = {
    "mask": {"family": "mask", "p": 0.75},
    "noise": {"family": "noise", "sigma": 0.3},
    "blur": {"family": "blur", "kernel": 21, "sigma": 5.0},
    "mixed": {  # one of the three above (or clean) per image; tests/test_mixed.py
        "family": "mixed",
        "settings": {
            "mask-0.75": {"family": "mask", "p": 0.75},
            "noise-0.3": {"family": "noise", "sigma": 0.3},
            "blur-21-5": {"family": "blur", "kernel": 21, "sigma": 5.0},
        },
        "include_clean": True,
        "rates": None,
    },
}
RANDOM_FAMILIES = ["mask", "noise", "mixed"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def positive_images(b=4, c=3, h=32, w=32, seed=0) -> torch.Tensor:
    """Pixels in [0.5, 1): no zeros, so masked pixels are exactly the zeros of the output."""
    return 0.5 + 0.5 * torch.rand(b, c, h, w, generator=gen(seed))


def textured_images(b=2, c=3, h=64, w=64) -> torch.Tensor:
    """Checkerboards of cells 1, 2, 4, 8 and 16 px, averaged, in [0.1, 0.9].

    Texture at every scale, so a stronger blur keeps removing detail (a single fine
    checkerboard is flat after sigma ~1 and the error saturates).
    """
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = sum(((yy // s + xx // s) % 2).float() for s in (1, 2, 4, 8, 16)) / 5  # (H, W)
    return (0.1 + 0.8 * img).expand(b, c, h, w).clone()  # (B, C, H, W)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def test_registry_lists_config_families():
    assert available_families() == sorted(SPECS)


@pytest.mark.parametrize("family", available_families())
def test_create_describe_roundtrip(family):
    d = create_distortion(SPECS[family])
    assert isinstance(d, Distortion)
    assert d.family == family
    assert d.describe() == SPECS[family]
    assert create_distortion(d.describe()) == d
    assert family in repr(d) or type(d).__name__ in repr(d)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ({"family": "sharpen", "amount": 1}, "sharpen"),
        ({"p": 0.5}, "family"),
        ({"family": "mask"}, "p"),
        ({"family": "blur", "sigma": 9.0}, "kernel"),
        ({"family": "noise", "sigma": 0.5, "mean": 0.0}, "mean"),
        ({"family": "mask", "p": 0.5, "sigma": 1.0}, "sigma"),
        ({"family": "mask", "p": 1.5}, "p"),
        ({"family": "mask", "p": "0.5"}, "p"),
        ({"family": "noise", "sigma": -0.1}, "sigma"),
        ({"family": "blur", "kernel": 4, "sigma": 1.0}, "kernel"),
        ({"family": "blur", "kernel": 5.0, "sigma": 1.0}, "kernel"),
        ({"family": "blur", "kernel": 5, "sigma": 0.0}, "sigma"),
    ],
)
def test_create_distortion_errors_name_the_culprit(spec, name):
    with pytest.raises(ValueError, match=name):
        create_distortion(spec)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="mask"):

        @register_distortion("mask")
        class Again(Distortion):
            def _apply(self, x, generator):
                return x

            def params(self):
                return {}


# ----------------------------------------------------------------------------------------------
# Properties common to all families
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", available_families())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_shape_dtype_range(family, dtype):
    d = create_distortion(SPECS[family])
    x = positive_images(3, 3, 24, 20).to(dtype)
    with torch.no_grad():
        y = d(x, generator=gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("family", available_families())
def test_half_precision_matches_float32(family):
    d = create_distortion(SPECS[family])
    x = positive_images().half()
    y16 = d(x, generator=gen(3))
    y32 = d(x.float(), generator=gen(3))
    # Same random draws (made in float32), so the results differ only by the final rounding.
    torch.testing.assert_close(y16, y32.half(), atol=1e-3, rtol=0)


@pytest.mark.parametrize("family", available_families())
def test_single_image_and_input_untouched(family):
    d = create_distortion(SPECS[family])
    x = positive_images(1)
    before = x.clone()
    y3 = d(x[0], generator=gen(1))  # (C, H, W)
    y4 = d(x, generator=gen(1))  # (1, C, H, W)
    assert torch.equal(x, before)
    assert torch.equal(y3, y4[0])
    with pytest.raises(ValueError, match="shape"):
        d(x[0, 0])
    with pytest.raises(ValueError, match="floating"):
        d((x * 255).to(torch.uint8))


@pytest.mark.parametrize("family", available_families())
def test_same_seed_same_output(family):
    d = create_distortion(SPECS[family])
    x = positive_images()
    assert torch.equal(d(x, generator=gen(7)), d(x, generator=gen(7)))
    assert torch.equal(apply_distortion(x, SPECS[family], 7), apply_distortion(x, d, 7))


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_different_seed_different_output(family):
    d = create_distortion(SPECS[family])
    x = positive_images()
    assert not torch.equal(d(x, generator=gen(1)), d(x, generator=gen(2)))
    assert not torch.equal(apply_distortion(x, d, 1), apply_distortion(x, d, 2))


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_global_rng_when_no_generator(family):
    d = create_distortion(SPECS[family])
    x = positive_images()
    torch.manual_seed(11)
    a = d(x)
    torch.manual_seed(11)
    assert torch.equal(d(x), a)


SEVERITIES = {
    "mask": [{"p": p} for p in (0.1, 0.5, 0.75, 0.9, 0.98)],
    "noise": [{"sigma": s} for s in (0.05, 0.1, 0.3, 0.5, 1.0)],
    "blur": [{"kernel": 21, "sigma": s} for s in (0.3, 0.6, 1.0, 2.0, 5.0)],
    # A mix of one setting (no clean) is that setting: as severe as it is.
    "mixed": [{"settings": {"m": {"family": "mask", "p": p}}} for p in (0.1, 0.5, 0.9)],
}


@pytest.mark.parametrize("family", available_families())
def test_severity_is_monotone(family):
    x = textured_images()
    errors = [
        (apply_distortion(x, {"family": family, **params}, seed=0) - x).abs().mean().item()
        for params in SEVERITIES[family]
    ]
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors


# ----------------------------------------------------------------------------------------------
# mask
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.75, 0.9, 0.98, 1.0])
@pytest.mark.parametrize(("h", "w"), [(32, 32), (15, 17)])
def test_mask_exact_count_shared_channels_nothing_else(p, h, w):
    x = positive_images(6, 3, h, w)
    y = create_distortion({"family": "mask", "p": p})(x, generator=gen(0))
    zero = y == 0  # (B, C, H, W)
    k = int(h * w * p)
    # Exactly k masked positions per image, the same in every channel ...
    assert (zero.flatten(1).sum(1) == 3 * k).all()
    assert (zero == zero[:, :1]).all()
    # ... and every other pixel untouched.
    assert torch.equal(y[~zero], x[~zero])


def test_mask_fresh_per_image():
    x = positive_images(8, 3, 16, 16)
    zero = create_distortion({"family": "mask", "p": 0.5})(x, generator=gen(0))[:, 0] == 0
    flat = zero.flatten(1)  # (B, H*W)
    assert len({tuple(row.tolist()) for row in flat}) == 8


def test_mask_positions_are_uniform():
    # Each of the 64 positions is masked with probability p; over 2000 images the count is
    # Binomial(2000, 0.25): mean 500, sd ~19.4; 5 sd bounds make a false alarm negligible.
    x = torch.ones(2000, 1, 8, 8)
    zero = create_distortion({"family": "mask", "p": 0.25})(x, generator=gen(0)) == 0
    counts = zero.sum(0).flatten()  # (64,)
    assert counts.min() > 500 - 5 * 19.4 and counts.max() < 500 + 5 * 19.4


def test_mask_same_mask_for_any_channel_count_and_dtype():
    x = positive_images(2, 1, 16, 16)
    d = create_distortion({"family": "mask", "p": 0.5})
    z1 = d(x, generator=gen(4)) == 0
    z3 = d(x.expand(2, 3, 16, 16).double(), generator=gen(4)) == 0
    assert torch.equal(z3, z1.expand(2, 3, 16, 16))


# ----------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------


def test_noise_statistics_on_mid_grey():
    # Mid-grey 0.5 with sigma 0.05: clipping needs |z| > 10, negligible. With n = 4*3*64*64 =
    # 49152 samples the sample mean has sd sigma/sqrt(n) ~ 2.3e-4 and the sample sd has sd
    # ~ sigma/sqrt(2n) ~ 1.6e-4; we allow 5 of those.
    sigma, n = 0.05, 4 * 3 * 64 * 64
    x = torch.full((4, 3, 64, 64), 0.5)
    r = apply_distortion(x, {"family": "noise", "sigma": sigma}, seed=0) - x
    assert abs(r.mean().item()) < 5 * sigma / n**0.5
    assert abs(r.std().item() - sigma) < 5 * sigma / (2 * n) ** 0.5


def test_noise_independent_across_channels_and_pixels():
    x = torch.full((64, 3, 16, 16), 0.5)
    r = apply_distortion(x, {"family": "noise", "sigma": 0.05}, seed=0) - x
    a, b = r[:, 0].flatten(), r[:, 1].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(corr) < 5 / a.numel() ** 0.5  # sd of a null correlation ~ 1/sqrt(n)


def test_noise_is_clipped():
    x = torch.full((2, 3, 32, 32), 0.5)
    y = apply_distortion(x, {"family": "noise", "sigma": 2.0}, seed=0)
    assert y.min() == 0 and y.max() == 1
    # P(|z| > 0.25) ~ 0.80 at sigma 2: most pixels are clipped to 0 or 1.
    assert ((y == 0) | (y == 1)).float().mean() > 0.7


# ----------------------------------------------------------------------------------------------
# blur
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "sigma", "shape"),
    [
        (21, 5.0, (2, 3, 64, 64)),
        (37, 9.0, (2, 3, 64, 64)),
        (5, 1.5, (2, 3, 15, 17)),
        (7, 2.0, (5, 4, 17, 15)),
        (1, 1.0, (1, 3, 8, 8)),
        (31, 9.0, (1, 3, 16, 16)),  # kernel // 2 = H - 1: the largest torchvision allows
        (21, 5.0, (3, 1, 40, 11)),  # larger than the width only
    ],
)
def test_blur_equals_torchvision(kernel, sigma, shape):
    x = torch.rand(shape, generator=gen(0))
    want = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    got = create_distortion({"family": "blur", "kernel": kernel, "sigma": sigma})(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_blur_equals_torchvision_float64():
    x = torch.rand(2, 3, 32, 32, generator=gen(0), dtype=torch.float64)
    want = TF.gaussian_blur(x, [21, 21], [5.0, 5.0])
    got = GaussianBlur(21, 5.0)(x)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_blur_kernel_wider_than_image_is_repeated_reflection():
    # torchvision refuses kernel // 2 >= H (reflect padding must be smaller than the image).
    # We reflect repeatedly, exactly as numpy's pad(mode="reflect") does.
    x = torch.rand(2, 3, 12, 9, generator=gen(0), dtype=torch.float64)
    kernel, sigma = 37, 9.0
    with pytest.raises(RuntimeError):
        TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    half = kernel // 2
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (half, half), (half, half)), mode="reflect")
    g = TF._misc._get_gaussian_kernel1d(kernel, sigma, dtype=torch.float64, device="cpu")
    want = torch.nn.functional.conv2d(
        torch.from_numpy(padded), torch.outer(g, g).expand(3, 1, kernel, kernel), groups=3
    )
    torch.testing.assert_close(GaussianBlur(kernel, sigma)(x), want, atol=1e-12, rtol=0)


def test_blur_matrix_rows_sum_to_one_and_one_pixel_images():
    for n in (1, 2, 5, 64):
        m = blur_matrix(n, 37, 9.0)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)
    x = torch.rand(2, 3, 1, 1)
    assert torch.equal(GaussianBlur(37, 9.0)(x), x)


def test_blur_ignores_generator_cache_and_pickle():
    d = GaussianBlur(21, 5.0)
    x = torch.rand(2, 3, 16, 24)
    y = d(x, generator=gen(1))
    assert torch.equal(d(x, generator=gen(2)), y)
    assert torch.equal(d(x), y)
    assert len(d._cache) == 2  # one matrix for H=16, one for W=24
    clone = pickle.loads(pickle.dumps(d))
    assert clone._cache == {} and torch.equal(clone(x), y)


# ----------------------------------------------------------------------------------------------
# seeded_generator
# ----------------------------------------------------------------------------------------------


def test_seeded_generator_same_keys_same_stream():
    a = torch.rand(8, generator=seeded_generator("cpu", 0, 3, 17))
    b = torch.rand(8, generator=seeded_generator(torch.device("cpu"), 0, 3, 17))
    assert torch.equal(a, b)


def test_seeded_generator_different_keys_different_stream():
    # Includes tuples that differ only by trailing zeros or by how a big key splits into words
    # (numpy's SeedSequence would give (0,) and (0, 0) the same state).
    keys = [(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 1), (0, 1, 0), (2**32,), (0, 1, 0, 0)]
    draws = {tuple(torch.rand(4, generator=seeded_generator("cpu", *k)).tolist()) for k in keys}
    assert len(draws) == len(keys)


@pytest.mark.parametrize("keys", [(), (1.5,), (True,), ("3",)])
def test_seeded_generator_rejects_bad_keys(keys):
    with pytest.raises(ValueError):
        seeded_generator("cpu", *keys)


def test_seeded_generator_drives_distortions_per_step():
    x = positive_images()
    d = create_distortion(SPECS["mask"])
    step3 = d(x, generator=seeded_generator("cpu", 0, 1, 3))
    assert torch.equal(d(x, generator=seeded_generator("cpu", 0, 1, 3)), step3)
    assert not torch.equal(d(x, generator=seeded_generator("cpu", 0, 1, 4)), step3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", available_families())
def test_runs_on_cuda(family):
    x = positive_images().cuda()
    y = apply_distortion(x, SPECS[family], seed=0)
    assert y.device == x.device and y.shape == x.shape


def test_only_blur_is_deterministic():
    assert create_distortion({"family": "blur", "kernel": 3, "sigma": 1.0}).is_random is False
    assert create_distortion({"family": "mask", "p": 0.5}).is_random is True
    assert create_distortion({"family": "noise", "sigma": 0.1}).is_random is True


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 3, 17, 23)])
def test_blur_under_autocast_is_the_float32_blur(shape):
    # Issue 25, point 6: training distorts under autocast, evaluation without; the blur's matrix
    # products ran in bf16 in the first and float32 in the second. They run in float32 in both.
    x = torch.rand(shape, generator=gen(0))
    blur = GaussianBlur(9, 1.3)
    want = blur(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = blur(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
