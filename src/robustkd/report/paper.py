"""Data of the paper's figures, gathered from the pipeline's outputs.

Data frames for Figs 2 and 3 from the metrics files, and the attention maps of Fig 4 computed
from the teacher, our students and the supervised models. The plotting itself lives in
:mod:`robustkd.report.figures`; this module only gathers data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustkd.layout import METHOD_LABELS, finetune_files, fraction_tag, ladder_file
from robustkd.readback import read_json
from robustkd.report.figures import AttentionPanel, severity_label, severity_of

__all__ = ["attention_grid", "fig2_frame", "fig3_frame", "fig4_panels"]

_FAMILY_LABELS = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}


def _label(method: str) -> str:
    return "Supervised Baseline" if method == "supervised" else METHOD_LABELS[method]


def fig2_frame(config: Mapping[str, Any]) -> pd.DataFrame:
    """Fig 2's data: top-1 per (method, family, test severity, seed) from the ladder files.

    Args:
        config: The resolved config (``experiments.fig2``, ``distortions``).

    Returns:
        Columns family, method, method_label, distortion, severity, severity_label, trained,
        seed, top1, source.
    """
    exp = config["experiments"]["fig2"]
    rows = []
    for method in exp["methods"]:
        for trained in (lad["train"] for lad in exp["ladders"]):
            path = ladder_file(method, trained)
            for r in read_json(path, "ladder metrics file")["results"]:
                spec = config["distortions"][r["distortion"]]
                rows.append(
                    {
                        "family": spec["family"],
                        "method": method,
                        "method_label": _label(method),
                        "distortion": r["distortion"],
                        "severity": severity_of(spec),
                        "severity_label": severity_label(spec),
                        "trained": r["distortion"] == trained,
                        "seed": r["seed"],
                        "top1": r["top1"],
                        "source": path,
                    }
                )
    return pd.DataFrame(rows)


def fig3_frame(config: Mapping[str, Any]) -> pd.DataFrame:
    """Fig 3's data: top-1 per (method, family, label fraction, seed).

    Args:
        config: The resolved config (``experiments.fig3``, ``distortions``, ``seeds``).

    Returns:
        Columns family, method, method_label, distortion, fraction, seed, top1, source.
    """
    exp = config["experiments"]["fig3"]
    rows = []
    for method in exp["methods"]:
        for dist in exp["distortions"]:
            for f in exp["fractions"]:
                for seed in config["seeds"]:
                    path = finetune_files("imagenet100", method, dist, fraction_tag(f), seed)[
                        "metrics"
                    ]
                    rows.append(
                        {
                            "family": config["distortions"][dist]["family"],
                            "method": method,
                            "method_label": _label(method),
                            "distortion": dist,
                            "fraction": float(f),
                            "seed": seed,
                            "top1": read_json(path, "metrics file")["top1"],
                            "source": path,
                        }
                    )
    return pd.DataFrame(rows)


@torch.no_grad()
def attention_grid(backbone: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """Per-head-mean CLS->patch attention of a ViT's last block, as a patch grid.

    Args:
        backbone: A timm ViT (the tap of :func:`robustkd.models.taps.vit_forward`).
        image: One normalised image (3, S, S).

    Returns:
        (h, w) attention weights summing to 1 (h = w = sqrt of the number of patches).
    """
    from robustkd.models.taps import vit_forward

    logits = vit_forward(backbone.eval(), image[None], with_attention=True).attn_logits
    attn = logits.float().softmax(dim=-1).mean(dim=1)[0]  # (N,): mean over heads
    side = int(round(attn.numel() ** 0.5))
    return attn.reshape(side, side).cpu().numpy()


def fig4_panels(
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
) -> list[AttentionPanel]:
    """Attention maps for Fig 4: for each distortion, ``images`` validation images.

    Each panel: the clean image, its distorted version, the teacher's map on the clean image,
    our student's and the supervised classifier's maps on the distorted image.

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
        One panel per (distortion, image).
    """
    from robustkd.data.prepared import PreparedDataset
    from robustkd.distortions import seeded_generator
    from robustkd.engine.data import load_image_set, to_unit_float
    from robustkd.engine.inputs import input_view, load_classifier, resolve_distortion
    from robustkd.models.backbones import create_backbone

    prepared = PreparedDataset(data_dir)
    view, normalize = input_view(views, backbone)
    val = load_image_set(prepared, "val", view, train=False, preload_size=views.get("preload_size"))
    clean = to_unit_float(torch.stack([val[i][0] for i in range(images)]))  # (I, 3, S, S)
    spec = dict(backbone) if teacher_weights is None else {**backbone, "weights": teacher_weights}
    teacher = create_backbone(spec)
    panels = []
    for d, ours_w, sup_w in zip(distortions, ours, supervised, strict=True):
        dist = resolve_distortion(d)
        distorted = dist(clean, seeded_generator("cpu", seed, 0xF164))
        student = create_backbone({**backbone, "weights": str(ours_w)})
        sup = load_classifier(backbone, sup_w, len(prepared.classes)).backbone
        label = f"{_FAMILY_LABELS[d['family']]} {severity_label(d)}"
        for i in range(images):
            panels.append(
                AttentionPanel(
                    family_label=label,
                    clean=clean[i].permute(1, 2, 0).numpy(),
                    distorted=distorted[i].permute(1, 2, 0).numpy(),
                    maps={
                        "Teacher (clean)": attention_grid(teacher, normalize(clean[i : i + 1])[0]),
                        "Ours (distorted)": attention_grid(
                            student, normalize(distorted[i : i + 1])[0]
                        ),
                        "Supervised (distorted)": attention_grid(
                            sup, normalize(distorted[i : i + 1])[0]
                        ),
                    },
                )
            )
    return panels
