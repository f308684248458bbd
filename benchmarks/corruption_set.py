"""Store or regenerate? The corrupted evaluation set's cost per image, at a given size.

    python benchmarks/corruption_set.py --size 224 --protocol imagenetc --batch 8 --threads 1

For each of the 15 benchmark corruptions (every severity, one warm-up call first), prints the
seconds to corrupt one image of ``size`` px (median over severities), then the total per image
for the 15 x 5 set, the bytes one image takes stored as uint8 (15 x 5 x size^2 x 3), and the
seconds to read one stored image back from a ``.npy`` (memory-mapped, then copied). Multiply by
the set's size (5,000 val images at paper scale) and the number of evaluation jobs that would
regenerate it (one per method and training distortion: 18) to compare the two options.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustkd.corruptions import BENCHMARK_CORRUPTIONS, create_corruption, to_uint8
from robustkd.distortions import seeded_generator


def main() -> None:
    """Time every corruption per image and a stored image's read-back."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--protocol", default="imagenetc")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    total = 0.0
    out = None
    for name in BENCHMARK_CORRUPTIONS:
        create_corruption(name, 1, args.protocol)(x[:1], seeded_generator("cpu", 0))  # warm-up
        times = []
        for s in range(1, 6):
            op = create_corruption(name, s, args.protocol)
            t0 = time.perf_counter()
            out = to_uint8(op(x, seeded_generator("cpu", 1, s)))
            times.append((time.perf_counter() - t0) / args.batch)
        total += 5 * statistics.median(times)
        print(f"{name:18s} {1e3 * statistics.median(times):9.2f} ms/image")
    per_image_bytes = 15 * 5 * args.size * args.size * 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.npy"
        np.save(path, np.repeat(out, 16, axis=0))
        t0 = time.perf_counter()
        arr = np.load(path, mmap_mode="r")
        _ = np.array(arr)
        read = (time.perf_counter() - t0) / len(arr)
    print(f"generate the 15 x 5 set: {total:.3f} s per image")
    print(f"store it: {per_image_bytes / 1e6:.2f} MB per image (uint8)")
    print(f"read one stored corrupted image: {1e6 * read:.1f} us (x 75 per image)")


if __name__ == "__main__":
    main()
