"""Time the distortions: milliseconds per batch, blur against torchvision's gaussian_blur.

    python benchmarks/distortions.py --batch 128 --size 224 --device cpu --repeats 5

Prints one line per distortion (median and min of ``--repeats`` timed calls after one warm-up)
and the largest difference between our blur and torchvision's (``-`` where torchvision refuses
a kernel wider than the image).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as TF

from robustkd.distortions import create_distortion

SPECS = [
    {"family": "mask", "p": 0.75},
    {"family": "mask", "p": 0.9},
    {"family": "noise", "sigma": 0.3},
    {"family": "noise", "sigma": 0.5},
    {"family": "blur", "kernel": 21, "sigma": 5.0},
    {"family": "blur", "kernel": 37, "sigma": 9.0},
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up: caches, allocator, kernels
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224, help="image height and width (px)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x = torch.rand(shape, device=device, generator=g)  # (B, C, H, W)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"batch {tuple(x.shape)}, {args.repeats} repeats"
    )
    print(f"{'distortion':<32}{'median ms':>12}{'min ms':>10}{'max |diff|':>12}")

    def row(name: str, times: list[float], diff: str = "") -> None:
        print(f"{name:<32}{statistics.median(times):>12.1f}{min(times):>10.1f}{diff:>12}")

    with torch.no_grad():
        for spec in SPECS:
            d = create_distortion(spec)
            name = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "family")
            row(f"{spec['family']} ({name})", time_ms(lambda d=d: d(x, g), device, args.repeats))
            if spec["family"] != "blur":
                continue
            k, s = spec["kernel"], spec["sigma"]
            if k // 2 >= args.size:
                row("  torchvision gaussian_blur", [float("nan")], "-")
                continue
            ref = TF.gaussian_blur(x, [k, k], [s, s])
            diff = (d(x) - ref).abs().max().item()
            times = time_ms(
                lambda k=k, s=s: TF.gaussian_blur(x, [k, k], [s, s]), device, args.repeats
            )
            row("  torchvision gaussian_blur", times, f"{diff:.1e}")


if __name__ == "__main__":
    main()
