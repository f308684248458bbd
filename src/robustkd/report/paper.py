"""Data of the paper's figures, gathered from the pipeline's outputs.

Data frames for Figs 2 and 3 from the metrics files, and the panels of Fig 4 from the attention
maps that the ``attention_maps`` job computed (:mod:`robustkd.engine.attention`). The plotting
itself lives in :mod:`robustkd.report.figures`; this module only gathers data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from robustkd.labelfractions import fraction_used
from robustkd.layout import METHOD_LABELS, finetune_files, fraction_tag, ladder_file
from robustkd.readback import read_json
from robustkd.report.figures import AttentionPanel, severity_label, severity_of

__all__ = ["fig2_frame", "fig3_frame", "fig4_panels"]

_FAMILY_LABELS = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}
# Fig 4's column titles: whose map, then what it saw (``Ours (distorted)``).
_MODEL_LABELS = {"teacher": "Teacher", "ours": "Ours", "supervised": "Supervised"}


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

    ``fraction`` is the share of the labels each run used (``fraction_used`` of its metrics
    file), which on a small set differs from the fraction asked (at least one image per class
    is kept); ``fraction_asked`` is the configured one.

    Args:
        config: The resolved config (``experiments.fig3``, ``distortions``, ``seeds``).

    Returns:
        Columns family, method, method_label, distortion, fraction, fraction_asked, seed, top1,
        source.

    Raises:
        ValueError: A metrics file does not say the share it used
            (:func:`robustkd.labelfractions.fraction_used`).
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
                    metrics = read_json(path, "metrics file")
                    rows.append(
                        {
                            "family": config["distortions"][dist]["family"],
                            "method": method,
                            "method_label": _label(method),
                            "distortion": dist,
                            "fraction": fraction_used(metrics, path, float(f)),
                            "fraction_asked": float(f),
                            "seed": seed,
                            "top1": metrics["top1"],
                            "source": path,
                        }
                    )
    return pd.DataFrame(rows)


def fig4_panels(path: str | os.PathLike[str]) -> list[AttentionPanel]:
    """Fig 4's panels from the attention maps job's file (rule ``attention_maps``).

    Each panel: the clean image, its distorted version, the teacher's map on the clean image,
    our student's and the supervised classifier's maps on the distorted image.

    Args:
        path: The ``.npz`` written by :func:`robustkd.engine.attention.attention_maps_job`
            (its arrays are described in :mod:`robustkd.engine.attention`).

    Returns:
        One panel per (distortion, image), distortions in the outer loop.

    Raises:
        FileNotFoundError: No such file.
        KeyError: An array is missing.
    """
    with np.load(path, allow_pickle=False) as npz:
        clean, distorted, attention = npz["clean"], npz["distorted"], npz["attention"]
        titles = [
            f"{_MODEL_LABELS[str(m)]} ({x})"
            for m, x in zip(npz["models"], npz["inputs"], strict=True)
        ]
        specs = [json.loads(str(d)) for d in npz["distortions"]]
    panels = []
    for d, spec in enumerate(specs):
        label = f"{_FAMILY_LABELS[spec['family']]} {severity_label(spec)}"
        for i in range(clean.shape[0]):
            panels.append(
                AttentionPanel(
                    family_label=label,
                    clean=clean[i],
                    distorted=distorted[d, i],
                    maps={t: attention[d, i, k] for k, t in enumerate(titles)},
                )
            )
    return panels
