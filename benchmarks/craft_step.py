"""Time the CRAFT study: each corruption per batch, and one training step of each method.

    python benchmarks/craft_step.py --batch 64 --threads 1 --repeats 5 [--layout both]

Prints milliseconds per call (median of ``--repeats`` timed calls after one warm-up) for every
corruption at severities 1 and 5 on a batch of 32x32 images, then images/s of one training step
(teacher forward, student forward/backward, AdamW) of each method with the demo's networks
(teacher ResNet-14, student ResNet-8, width 8) and M = 1 for CRAFT. ``--layout`` chooses the
networks' activation layout: ``auto`` (what the pipeline uses: contiguous on CPU, channels-last on
CUDA), ``contiguous``, ``channels_last``, or ``both`` (contiguous and channels-last side by side;
channels-last on CPU is timed only here, see ``robustkd.craft.models.memory_format_for``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from robustkd.corruptions import available_corruptions, create_corruption
from robustkd.craft.models import CIFAR_MEAN, CIFAR_STD, CifarResNet, freeze_teacher
from robustkd.craft.tasks import METHODS, create_task
from robustkd.distortions import seeded_generator
from robustkd.engine.distill import Normalize

OBJECTIVES = {
    "logitkd": {"temperature": 4.0, "lambda_kd": 1.0},
    "attentionkd": {"lambda_feat": 1.0, "layers": ["stage1", "stage2", "stage3"]},
    "crd": {"lambda_crd": 0.8, "feat_dim": 64, "nce_k": 256, "nce_t": 0.07, "nce_m": 0.5},
    "craft": {
        "views": 1,
        "layers": ["stage1", "stage2", "stage3"],
        "temperature": 4.0,
        "tau": 0.1,
        "alpha": 10.0,
        "beta": 1.0,
        "gamma": 0.5,
        "lambda_kd": 1.0,
        "lambda_con": 1.0,
        "lambda_de": 1.0,
        "train_corruptions": ["gaussian_noise", "defocus_blur", "fog", "pixelate"],
    },
}


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--layout", choices=["auto", "contiguous", "channels_last", "both"], default="auto"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, 32, 32)
    print(f"corruptions, batch {args.batch} at 32 px (ms per batch)")
    for name in available_corruptions():
        ms = []
        for severity in (1, 5):
            op = create_corruption(name, severity)
            ms.append(1000 * timed(lambda op=op: op(x, seeded_generator("cpu", 0)), args.repeats))
        print(f"  {name:18s} severity 1: {ms[0]:7.1f}   severity 5: {ms[1]:7.1f}")
    layouts = {
        "auto": {"auto": None},
        "contiguous": {"contiguous": torch.contiguous_format},
        "channels_last": {"channels_last": torch.channels_last},
        "both": {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last},
    }[args.layout]
    for layout, fmt in layouts.items():
        steps(args, x, layout, fmt)


def steps(args, x, layout, fmt) -> None:
    teacher = freeze_teacher(CifarResNet(14, 8, memory_format=fmt))
    normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
    labels = torch.randint(0, 10, (args.batch,))
    targets = torch.stack([labels, torch.arange(args.batch)], 1)
    print(f"training steps, batch {args.batch}, layout {layout} (images/s)")
    for method in METHODS:
        task = create_task(
            method,
            CifarResNet(8, 8, memory_format=fmt),
            teacher,
            normalize,
            OBJECTIVES.get(method, {}),
            train_labels=torch.randint(0, 10, (max(512, args.batch),)),
        )
        opt = torch.optim.AdamW(task.model.parameters(), 1e-3)

        def step(task=task, opt=opt) -> None:
            loss = task.loss(x, targets, seeded_generator("cpu", 0))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        print(f"  {method:12s} {args.batch / timed(step, args.repeats):8.0f}")


if __name__ == "__main__":
    main()
