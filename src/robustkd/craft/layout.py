"""Where every output of the CRAFT study lives (imported by the workflow: no torch here).

::

    results/craft/cifar10c/{corruption}.npy, labels.npy       the corrupted test set (uint8,
                                                             severity 1 first, as released)
    results/craft/teacher/model.pth, metrics.json             the frozen teacher
    results/craft/students/{method}/seed{s}/student.pth       one student per method and seed,
        metrics.json, eval/{condition}.json                   its evaluation
    results/craft/tables/craft_table.{csv,md,tex,html}       the CRAFT table (+ breakdowns),
        craft_table.provenance.json                          each cell -> its metrics files
    results/craft/figures/{figure}.{png,pdf,csv}             the figures and their data
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustkd.report.tables import TABLE_FORMATS

__all__ = [
    "FIGURES",
    "ROOT",
    "TABLES",
    "cifar10c_files",
    "cifar10c_labels",
    "eval_conditions",
    "eval_file",
    "heldout_corruptions",
    "student_files",
    "study_outputs",
    "table_files",
    "figure_files",
    "figures_provenance",
    "teacher_files",
]

ROOT = "results/craft"
# Tables: the CRAFT table, then the per-corruption and per-severity breakdowns.
TABLES = ("craft_table", "craft_per_corruption", "craft_per_severity")
FIGURES = (
    "clean_vs_robust",
    "pairwise_differences",
    "per_corruption",
    "training_curves",
    "nan_counts",
    "cost_vs_robustness",
    "alignment_heatmap",
)


def cifar10c_files(config: Mapping[str, Any]) -> dict[str, str]:
    """Corruption name -> its file of the corrupted test set."""
    names = config["craft"]["corruptions"]["evaluate"]
    return {c: f"{ROOT}/cifar10c/{c}.npy" for c in names}


def cifar10c_labels() -> str:
    """The labels of the corrupted test set (the test labels repeated per severity)."""
    return f"{ROOT}/cifar10c/labels.npy"


def teacher_files() -> dict[str, str]:
    """The teacher's weights and metrics."""
    return {"weights": f"{ROOT}/teacher/model.pth", "metrics": f"{ROOT}/teacher/metrics.json"}


def student_files(method: str, seed: int | str) -> dict[str, str]:
    """A student's weights and metrics (its checkpoint and log live in the same folder)."""
    base = f"{ROOT}/students/{method}/seed{seed}"
    return {"weights": f"{base}/student.pth", "metrics": f"{base}/metrics.json"}


def heldout_corruptions(config: Mapping[str, Any]) -> list[str]:
    """Evaluation corruptions CRAFT never trains on (the primary metric's corruptions)."""
    cor = config["craft"]["corruptions"]
    return [c for c in cor["evaluate"] if c not in cor["craft_train"]]


def eval_conditions(config: Mapping[str, Any]) -> list[str]:
    """Names of the per-seed evaluation files (``eval/{name}.json``, each with ``top1``).

    ``clean``; ``robust_all`` (mean over every evaluated corruption and severity),
    ``robust_heldout`` (the primary metric: the same over held-out corruptions only),
    ``robust_train`` (over CRAFT's training corruptions); one per corruption (mean over
    severities) and ``severity{s}`` (mean over corruptions).
    """
    cor = config["craft"]["corruptions"]
    names = ["clean", "robust_all", "robust_heldout"]
    if any(c in cor["evaluate"] for c in cor["craft_train"]):
        names.append("robust_train")
    names += list(cor["evaluate"])
    names += [f"severity{s}" for s in cor["severities"]]
    return names


def eval_file(method: str, seed: int | str, condition: str) -> str:
    """One evaluation file of a student."""
    return f"{ROOT}/students/{method}/seed{seed}/eval/{condition}.json"


def table_files() -> list[str]:
    """Every table file (CSV, Markdown, LaTeX, HTML) and its ``.provenance.json``."""
    exts = (*TABLE_FORMATS, "provenance.json")
    return [f"{ROOT}/tables/{t}.{ext}" for t in TABLES for ext in exts]


def figure_files() -> list[str]:
    """Every figure file (PNG, PDF and the CSV of its data)."""
    return [f"{ROOT}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf", "csv")]


def figures_provenance() -> str:
    """The figures' ``provenance.json`` (inputs and outputs hashed)."""
    return f"{ROOT}/figures/provenance.json"


def study_outputs(config: Mapping[str, Any]) -> list[str]:
    """Every output of the study (the target ``craft``)."""
    seeds = config["seeds"]
    methods = config["methods"]["craft"]
    out = [*cifar10c_files(config).values(), cifar10c_labels(), *teacher_files().values()]
    for m in methods:
        for s in seeds:
            out += student_files(m, s).values()
            out += [eval_file(m, s, c) for c in eval_conditions(config)]
    return out + table_files() + figure_files()
