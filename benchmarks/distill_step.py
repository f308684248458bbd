"""Throughput of one distillation step, with and without the attention term.

    python benchmarks/distill_step.py --model vit_base_patch16_224 --img 224 --batch 8 \
        --device cpu --steps 3
    python benchmarks/distill_step.py --img 32 --patch 4 --embed-dim 96 --depth 4 --heads 3 \
        --batch 128 --steps 10

One step = distort the clean batch (pixels in [0, 1]), normalise both views, teacher forward
under no_grad on the clean view, student forward + backward on the distorted view, AdamW step.
On CUDA the forwards run under torch.autocast (bf16 when supported, else fp16 with a
GradScaler). Random weights (``weights: null``): speed does not depend on them. Prints figures;
asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import timm
import torch

from robustkd.losses import create_multilevel_loss, needs_attention
from robustkd.models import copy_student, create_backbone, freeze, model_input_config, vit_forward

WEIGHTS = {"lambda_g": 1.0, "lambda_l": 1.0, "lambda_a": 10.0, "tau": 1.0}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="vit_tiny_patch16_224", help="timm ViT name")
    p.add_argument("--img", type=int, default=224, help="image size (px)")
    p.add_argument("--patch", type=int, default=None, help="override patch size")
    p.add_argument("--embed-dim", type=int, default=None, help="override embedding dim")
    p.add_argument("--depth", type=int, default=None, help="override number of blocks")
    p.add_argument("--heads", type=int, default=None, help="override number of heads")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--distortion",
        default="noise:0.5",
        help="mask:<p> | noise:<sigma> | blur:<kernel>,<sigma> (default noise:0.5)",
    )
    p.add_argument("--variants", default="global-local,ours", help="loss variants to time")
    return p.parse_args()


def build_distortion(text: str):
    """A callable (x, generator) -> distorted x; robustkd.distortions if available."""
    family, _, value = text.partition(":")
    if family == "mask":
        spec = {"family": "mask", "p": float(value)}
    elif family == "noise":
        spec = {"family": "noise", "sigma": float(value)}
    elif family == "blur":
        kernel, sigma = value.split(",")
        spec = {"family": "blur", "kernel": int(kernel), "sigma": float(sigma)}
    else:
        raise SystemExit(f"unknown distortion {text!r}")
    try:
        from robustkd.distortions import create_distortion

        return create_distortion(spec), "robustkd.distortions"
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        if family != "noise":
            raise SystemExit(
                f"robustkd.distortions unavailable ({err}); only noise falls back"
            ) from err
        sigma = spec["sigma"]

        def noise(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            n = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return (x + sigma * n).clamp(0, 1)

        return noise, f"inline fallback ({type(err).__name__})"


def autocast_context(device: torch.device):
    if device.type != "cuda":
        return contextlib.nullcontext, None, "fp32"
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def ctx():
        return torch.autocast("cuda", dtype=dtype)

    return ctx, scaler, str(dtype).removeprefix("torch.")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kwargs = {"img_size": args.img}
    for key, value in (
        ("patch_size", args.patch),
        ("embed_dim", args.embed_dim),
        ("depth", args.depth),
        ("num_heads", args.heads),
    ):
        if value is not None:
            kwargs[key] = value

    torch.manual_seed(0)
    teacher = freeze(create_backbone({"timm_name": args.model, "weights": None, "kwargs": kwargs}))
    teacher.to(device)
    cfg = model_input_config(teacher)
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
    distort, distort_src = build_distortion(args.distortion)
    autocast, scaler, precision = autocast_context(device)
    n_params = sum(p.numel() for p in teacher.parameters())
    n_tokens = teacher.patch_embed.num_patches + teacher.num_prefix_tokens

    print(
        f"torch {torch.__version__}, timm {timm.__version__}, python {platform.python_version()}, "
        f"device {device}, threads {torch.get_num_threads()}, precision {precision}"
    )
    print(
        f"model {args.model} {kwargs}: {n_params / 1e6:.2f} M params, {n_tokens} tokens, "
        f"dim {teacher.embed_dim}, depth {len(teacher.blocks)}, "
        f"heads {teacher.blocks[-1].attn.num_heads}, fused_attn "
        f"{teacher.blocks[-1].attn.fused_attn}"
    )
    print(f"batch {args.batch}, distortion {args.distortion} via {distort_src}")

    gen = torch.Generator(device=device).manual_seed(0)
    clean = torch.rand(args.batch, 3, args.img, args.img, device=device, generator=gen)

    for variant in args.variants.split(","):
        with_attn = needs_attention(variant)
        loss_fn = create_multilevel_loss(variant, WEIGHTS)
        student = copy_student(teacher)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.05)

        def step(student=student, opt=opt, loss_fn=loss_fn, with_attn=with_attn) -> float:
            distorted = distort(clean, generator=gen)  # (B, 3, H, W)
            x_t, x_s = (clean - mean) / std, (distorted - mean) / std
            with autocast():
                with torch.no_grad():
                    t_out = vit_forward(teacher, x_t, with_attention=with_attn)
                s_out = vit_forward(student, x_s, with_attention=with_attn)
                losses = loss_fn(s_out, t_out)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(losses["loss"]).backward()
                scaler.step(opt)
                scaler.update()
            else:
                losses["loss"].backward()
                opt.step()
            return float(losses["loss"].detach())

        for _ in range(args.warmup):
            step()
        sync(device)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            loss = step()
            sync(device)
            times.append(time.perf_counter() - t0)
        med = sorted(times)[len(times) // 2]
        print(
            f"{variant:>16} (attention {'on ' if with_attn else 'off'}): "
            f"{args.batch / med:9.1f} img/s  (median step {med * 1e3:8.1f} ms over "
            f"{args.steps} steps, min {min(times) * 1e3:.1f} ms; loss {loss:.4f})"
        )


if __name__ == "__main__":
    main()
