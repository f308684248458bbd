"""Where every output of the pipeline lives, and which files make each table.

Shared by the workflow (``workflow/rules/common.smk`` computes rule inputs from it) and by the
package (table scripts, audit), so a path is spelled once. Importing it is cheap: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustkd.report.tables import Cell, TableSpec, distortion_label

__all__ = [
    "DISTILL_METHODS",
    "IMPLEMENTED_METHODS",
    "METHOD_LABELS",
    "distill_weights",
    "finetune_files",
    "fraction_tag",
    "table_cells",
    "table_spec",
    "teacher_weights",
]

# Methods whose student comes from multi-level distillation (the ablation variants + ours).
DISTILL_METHODS = ("ours", "global", "global-local", "global-attention")
# Methods the pipeline can run today; a table column of another method prints as a dash.
IMPLEMENTED_METHODS = (*DISTILL_METHODS, "supervised")
METHOD_LABELS = {
    "ci": "CI",
    "supervised": "Supervised Baseline",
    "ours": "Ours",
    "global": "Global",
    "global-local": "Gl. Local",
    "global-attention": "Gl. Attention",
}
_NOT_IMPLEMENTED = {"ci": "Contrastive Inversion is not run by the pipeline yet."}


def fraction_tag(fraction: float) -> str:
    """Path tag of a label fraction: ``1`` for 100 %, ``0.005`` for 0.5 %."""
    return f"{float(fraction):g}"


def teacher_weights(backbone: str) -> str:
    """Weights of a backbone pretrained by the pipeline (the miniature's stand-in teachers)."""
    return f"results/teachers/{backbone}/model.pth"


def distill_weights(method: str, distortion: str, seed: int | str) -> str:
    """A distilled student's weights."""
    return f"results/distill/{method}/{distortion}/seed{seed}/student.pth"


def finetune_files(
    dataset: str, method: str, distortion: str, fraction: str, seed: int | str
) -> dict[str, str]:
    """The fine-tuned classifier's weights and metrics of one seed."""
    base = f"results/finetune/{dataset}/{method}/{distortion}/frac{fraction}/seed{seed}"
    return {"model": f"{base}/model.pth", "metrics": f"{base}/metrics.json"}


def _row_label(config: Mapping[str, Any], name: str) -> str:
    spec = config["distortions"][name]
    label = distortion_label(spec)
    stands_for = spec.get("stands_for")
    if stands_for:
        label += f" [for {distortion_label(config['distortions'][stands_for])}]"
    return label


def table_spec(config: Mapping[str, Any], name: str) -> TableSpec:
    """The layout of ``table1`` or ``table3`` under ``config``.

    Raises:
        KeyError: Unknown table.
    """
    exp = config["experiments"][name]
    dists = [(d, _row_label(config, d)) for d in exp["distortions"]]
    methods = [(m, METHOD_LABELS[m]) for m in exp["methods"]]
    seeds = len(config["seeds"])
    if name == "table1":
        return TableSpec(
            name,
            f"Table 1: ImageNet-100 top-1 accuracy (%) under distortion, {seeds} seeds",
            rows=dists,
            columns=methods,
            row_header="Distortion",
            missing=_NOT_IMPLEMENTED,
        )
    if name == "table3":
        rows = [(m, "Gl. Local Attention" if m == "ours" else lbl) for m, lbl in methods]
        return TableSpec(
            name,
            f"Table 3: distillation loss ablation, ImageNet-100 top-1 (%), {seeds} seeds",
            rows=rows,
            columns=dists,
            row_header="Model",
            missing=_NOT_IMPLEMENTED,
        )
    raise KeyError(f"unknown table {name!r}")


def table_cells(config: Mapping[str, Any], name: str) -> list[Cell]:
    """The cells of ``table1`` or ``table3`` that the pipeline computes, with metrics files."""
    exp = config["experiments"][name]
    seeds = config["seeds"]
    cells = []
    for m in exp["methods"]:
        if m not in IMPLEMENTED_METHODS:
            continue
        for d in exp["distortions"]:
            files = tuple(finetune_files("imagenet100", m, d, "1", s)["metrics"] for s in seeds)
            row, col = (d, m) if name == "table1" else (m, d)
            cells.append(Cell(row, col, files))
    return cells
