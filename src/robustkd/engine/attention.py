"""Fig 4's attention maps: the teacher, our students and the supervised classifiers at work.

A job (rule ``attention_maps``): loads the models, distorts the first validation images and
stores, in one ``.npz``, exactly the arrays the figure draws; the report only reads that file
(:func:`robustkd.report.paper.fig4_panels`) and draws it.

The file's arrays (D distortions, I images, M maps, S the input size, h = w = S / patch):

- ``clean`` (I, S, S, 3) float32 in [0, 1]: the clean images, channels last;
- ``distorted`` (D, I, S, S, 3) float32 in [0, 1]: each distortion's version of them;
- ``attention`` (D, I, M, h, w) float32: each map, rows summing to 1 over the whole grid;
- ``models`` (M,) str: whose map (``teacher``, ``ours``, ``supervised``), in column order;
- ``inputs`` (M,) str: what that model saw (``clean`` or ``distorted``);
- ``distortions`` (D,) str: each distortion's config entry as JSON (for its row label).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustkd.atomic import atomic_write_bytes
from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import seeded_generator
from robustkd.engine.data import load_image_set, to_unit_float
from robustkd.engine.inputs import input_view, load_classifier, resolve_distortion
from robustkd.models.backbones import create_backbone
from robustkd.models.taps import vit_forward
from robustkd.provenance import now_iso, write_provenance

__all__ = ["MAPS", "attention_grid", "attention_maps", "attention_maps_job"]

# (model, input) of each map, in the figure's column order.
MAPS = (("teacher", "clean"), ("ours", "distorted"), ("supervised", "distorted"))
# Key of the distortion stream (a fixed draw per seed, the same for every distortion).
_STREAM = 0xF164


@torch.no_grad()
def attention_grid(backbone: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """Per-head-mean CLS->patch attention of a ViT's last block, as a patch grid.

    Args:
        backbone: A timm ViT (the tap of :func:`robustkd.models.taps.vit_forward`).
        image: One normalised image (3, S, S).

    Returns:
        (h, w) float32 attention weights summing to 1 (h = w = sqrt of the number of patches).
    """
    logits = vit_forward(backbone.eval(), image[None], with_attention=True).attn_logits
    attn = logits.float().softmax(dim=-1).mean(dim=1)[0]  # (N,): mean over heads
    side = int(round(attn.numel() ** 0.5))
    return attn.reshape(side, side).cpu().numpy()


def attention_maps(
    *,
    backbone: Mapping[str, Any],
    teacher_weights: str | os.PathLike[str] | None,
    ours: Sequence[str | os.PathLike[str]],
    supervised: Sequence[str | os.PathLike[str]],
    distortions: Sequence[Mapping[str, Any]],
    data_dir: str | os.PathLike[str],
    views: Mapping[str, Any],
    images: int,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Attention maps for Fig 4: for each distortion, the first ``images`` validation images.

    The teacher's map is taken on the clean image, our student's and the supervised
    classifier's on the distorted one.

    Args:
        backbone: The ViT spec (weights resolved).
        teacher_weights: The teacher's weights file (None: the spec's own weights).
        ours: Our distilled student of each distortion.
        supervised: The supervised classifier (``model.pth``) of each distortion.
        distortions: Config entries of the distortions.
        data_dir: Prepared ImageNet-100.
        views: ``preload_size``.
        images: Validation images per distortion (the first ones of the val split).
        seed: Seed of the distortions drawn.

    Returns:
        The arrays of the module docstring, by name.

    Raises:
        ValueError: ``ours``, ``supervised`` and ``distortions`` differ in length.
    """
    prepared = PreparedDataset(data_dir)
    view, normalize = input_view(views, backbone)
    val = load_image_set(prepared, "val", view, train=False, preload_size=views.get("preload_size"))
    clean = to_unit_float(torch.stack([val[i][0] for i in range(images)]))  # (I, 3, S, S)
    spec = dict(backbone) if teacher_weights is None else {**backbone, "weights": teacher_weights}
    teacher = create_backbone(spec)
    distorted_all, attention = [], []
    for d, ours_w, sup_w in zip(distortions, ours, supervised, strict=True):
        dist = resolve_distortion(d)
        distorted = dist(clean, seeded_generator("cpu", seed, _STREAM))  # (I, 3, S, S)
        models = {
            "teacher": teacher,
            "ours": create_backbone({**backbone, "weights": str(ours_w)}),
            "supervised": load_classifier(backbone, sup_w, len(prepared.classes)).backbone,
        }
        seen = {"clean": clean, "distorted": distorted}
        attention.append(
            [
                [attention_grid(models[m], normalize(seen[x][i : i + 1])[0]) for m, x in MAPS]
                for i in range(images)
            ]
        )
        distorted_all.append(distorted.permute(0, 2, 3, 1).numpy())
    return {
        "clean": clean.permute(0, 2, 3, 1).numpy(),
        "distorted": np.stack(distorted_all),
        "attention": np.array(attention),
        "models": np.array([m for m, _ in MAPS]),
        "inputs": np.array([x for _, x in MAPS]),
        "distortions": np.array([json.dumps(dict(d), sort_keys=True) for d in distortions]),
    }


def attention_maps_job(
    *,
    backbone: Mapping[str, Any],
    teacher: Sequence[str | os.PathLike[str]],
    ours: Sequence[str | os.PathLike[str]],
    supervised: Sequence[str | os.PathLike[str]],
    distortions: Sequence[Mapping[str, Any]],
    data_dir: str | os.PathLike[str],
    views: Mapping[str, Any],
    images: int,
    seed: int,
    out: str | os.PathLike[str],
    rule: str = "attention_maps",
) -> None:
    """Compute Fig 4's attention maps and write them with their provenance.

    Args:
        backbone: The ViT spec (its weights resolved: what is loaded).
        teacher: The teacher's weights file (none, or one), loaded and hashed into the
            provenance: the workflow's (the stand-in pretrained for Fig 4's seed, or fetched
            from the hub) or the config's own file; empty: the spec's own weights.
        ours: Our distilled student of each distortion.
        supervised: The supervised classifier (``model.pth``) of each distortion.
        distortions: Config entries of the distortions.
        data_dir: Prepared ImageNet-100 (its ``manifest.csv`` is hashed).
        views: ``preload_size``.
        images: Validation images per distortion.
        seed: Seed of the distortions drawn.
        out: The ``.npz`` to write; ``provenance.json`` goes beside it.
        rule: Rule name for the provenance.

    Raises:
        ValueError: More than one teacher file.
    """
    if len(teacher) > 1:
        raise ValueError(f"one teacher weights file expected, got {len(teacher)}: {list(teacher)}")
    if teacher:
        backbone = {**backbone, "weights": str(teacher[0])}
    started = now_iso()
    arrays = attention_maps(
        backbone=backbone,
        teacher_weights=None,
        ours=ours,
        supervised=supervised,
        distortions=distortions,
        data_dir=data_dir,
        views=views,
        images=images,
        seed=seed,
    )
    out = Path(out)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    write_provenance(
        out.parent / "provenance.json",
        rule=rule,
        inputs=[*teacher, *ours, *supervised, Path(data_dir) / "manifest.csv"],
        outputs=[out],
        config={
            "backbone": dict(backbone),
            "distortions": [dict(d) for d in distortions],
            "images": images,
            "views": dict(views),
        },
        seed=seed,
        started=started,
    )
