"""Write tests/data/frost_released.npz: frost's bytes from the released generators' own code.

    PYTHONPATH=src python benchmarks/frost_released.py [--out tests/data/frost_released.npz]

Needs OpenCV (``cv2``; ``opencv-python`` comes with ``imagecorruptions``, a dependency) and the
frost photographs of the ``imagecorruptions`` package (byte-identical to the released ones).

``frost_cifar`` and ``frost_imagenet`` below are ``frost`` of ``make_cifar_c.py`` and of
``make_imagenet_c.py`` (hendrycks/robustness, ``ImageNet-C/create_c/``, commit
8190fe329f5f072a06e3a2aea02bb5dda69aed9f), copied verbatim but for their names. They run in the
folder of the photographs (their file names are ``./frost1.png`` ...), with
``np.random.randint`` replaced by a replay of the draws :class:`robustkd.corruptions.Frost`
takes from ``seeded_generator("cpu", SEED, severity)`` (each replayed call checks that the
released code asks for the same range as ours). Their float output is stored as ``np.uint8``
stores it, as the released scripts save it (``np.uint8(...)``).

Inputs: 6 images of 32 px for CIFAR-10-C (the image of ``cifar10c_released.npz``, with white,
grey and black patches, and 5 of the miniature's generator) and 1 of 224 px for ImageNet-C
(that image enlarged by nearest neighbour), at severities 1-5. The seed (5) is the first for
which each protocol's draws use each of the five photographs.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from robustkd.corruptions import create_corruption
from robustkd.corruptions.weather import frost_bank, frost_photo_dir
from robustkd.data.synthetic import draw_image
from robustkd.distortions import seeded_generator

ROOT = Path(__file__).resolve().parents[1]
SEED = 5

# fmt: off
# ---- make_cifar_c.py, lines 237-247 (verbatim but the name) ----------------------------------


def frost_cifar(x, severity=1):
    c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    idx = np.random.randint(5)
    filename = ['./frost1.png', './frost2.png', './frost3.png', './frost4.jpg', './frost5.jpg', './frost6.jpg'][idx]  # noqa: E501
    frost = cv2.imread(filename)
    frost = cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)
    # randomly crop and convert to rgb
    x_start, y_start = np.random.randint(0, frost.shape[0] - 32), np.random.randint(0, frost.shape[1] - 32)  # noqa: E501
    frost = frost[x_start:x_start + 32, y_start:y_start + 32][..., [2, 1, 0]]

    return np.clip(c[0] * np.array(x) + c[1] * frost, 0, 255)


# ---- make_imagenet_c.py, lines 390-403 (verbatim but the name) -------------------------------


def frost_imagenet(x, severity=1):
    c = [(1, 0.4),
         (0.8, 0.6),
         (0.7, 0.7),
         (0.65, 0.7),
         (0.6, 0.75)][severity - 1]
    idx = np.random.randint(5)
    filename = ['./frost1.png', './frost2.png', './frost3.png', './frost4.jpg', './frost5.jpg', './frost6.jpg'][idx]  # noqa: E501
    frost = cv2.imread(filename)
    # randomly crop and convert to rgb
    x_start, y_start = np.random.randint(0, frost.shape[0] - 224), np.random.randint(0, frost.shape[1] - 224)  # noqa: E501
    frost = frost[x_start:x_start + 224, y_start:y_start + 224][..., [2, 1, 0]]

    return np.clip(c[0] * np.array(x) + c[1] * frost, 0, 255)
# fmt: on


# ----------------------------------------------------------------------------------------------


@contextmanager
def replayed_randint(calls):
    """Replace ``np.random.randint`` by a replay of ``calls``: ``(expected args, value)``."""
    queue = list(calls)
    original = np.random.randint

    def replay(*args):
        expected, value = queue.pop(0)
        assert args == expected, f"released code asked randint{args}, ours drew from {expected}"
        return value

    np.random.randint = replay
    try:
        yield
    finally:
        np.random.randint = original
        assert not queue, f"{len(queue)} draws left unused"


def our_draws(protocol, severity, n, side):
    """Our corruption's (photograph, top, left) per image and the released randint calls."""
    op = create_corruption("frost", severity, protocol)
    g = seeded_generator("cpu", SEED, severity)
    draws = op.crop_draws(n, side, side, g, torch.device("cpu"))
    bank = frost_bank(protocol, side, side)
    calls = []
    for t, top, left in draws:
        rows, cols = bank[t].shape[0] - side, bank[t].shape[1] - side
        calls += [((5,), t), ((0, rows), top), ((0, cols), left)]
    return np.array(draws), calls


def inputs():
    """The CIFAR-10-C (6, 32, 32, 3) and ImageNet-C (1, 224, 224, 3) uint8 inputs."""
    base = np.load(ROOT / "tests" / "data" / "cifar10c_released.npz")["images"][0]
    rng = np.random.default_rng(5)
    cifar = np.stack([base] + [draw_image(rng, k, 10, 32) for k in range(5)])
    big = np.asarray(Image.fromarray(base).resize((224, 224), Image.Resampling.NEAREST))
    return {"cifar10c": cifar, "imagenetc": big[None]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "frost_released.npz")
    args = ap.parse_args()
    folder = frost_photo_dir()
    assert folder is not None, "install imagecorruptions (it ships the frost photographs)"
    images = inputs()
    released = {"cifar10c": frost_cifar, "imagenetc": frost_imagenet}
    out = {f"{p}_images": x for p, x in images.items()}
    here = Path.cwd()
    os.chdir(folder)  # the released code opens './frost1.png' ...
    try:
        for protocol, x in images.items():
            used = set()
            for severity in range(1, 6):
                draws, calls = our_draws(protocol, severity, len(x), x.shape[1])
                used |= set(draws[:, 0].tolist())
                with replayed_randint(calls):
                    res = [
                        np.uint8(released[protocol](Image.fromarray(img), severity)) for img in x
                    ]
                out[f"{protocol}_{severity}"] = np.stack(res)
                out[f"{protocol}_draws_{severity}"] = draws
            assert used == set(range(5)), f"{protocol}: photographs {sorted(used)} only"
    finally:
        os.chdir(here)
    out["versions"] = np.array(f"opencv {cv2.__version__}, numpy {np.__version__}")
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) with {out['versions']}")


if __name__ == "__main__":
    main()
