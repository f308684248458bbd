"""Where every output of the pipeline lives, and which files make each table.

Shared by the workflow (``workflow/rules/common.smk`` computes rule inputs from it) and by the
package (table scripts, audit), so a path is spelled once. Importing it is cheap: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from robustkd.config import distortion_entry
from robustkd.provenance import RECORD, record_beside, run_record
from robustkd.report.tables import (
    Cell,
    TableSpec,
    distortion_label,
    reference_comparisons,
)

__all__ = [
    "CORRUPTION_FIGURE",
    "CORRUPTION_SET_ROOT",
    "CORRUPTION_TABLE",
    "DATASET_LABELS",
    "CLEAN_TEST",
    "DISTILL_METHODS",
    "FIG4_ATTENTION",
    "FINETUNE_KINDS",
    "IMPLEMENTED_METHODS",
    "METHOD_LABELS",
    "PRETRAINED_METHODS",
    "RECORD",
    "backbone_of",
    "corruption_eval_file",
    "corruption_models",
    "corruption_outputs",
    "corruption_set_files",
    "corruption_set_labels",
    "distill_weights",
    "figure_files",
    "finetune_files",
    "finetune_runs",
    "evaluation_tests",
    "fetched_weights",
    "fraction_tag",
    "ladder_file",
    "table4_tests",
    "table_cells",
    "table_spec",
    "teacher_weights",
    "record_beside",
    "run_record",
]

# Methods whose student comes from multi-level distillation (the ablation variants + ours).
DISTILL_METHODS = ("ours", "global", "global-local", "global-attention")
# Methods whose fine-tuning starts from a pretrained student (distilled or contrastive).
PRETRAINED_METHODS = (*DISTILL_METHODS, "ci")
# Methods the pipeline can run; a table column of another method would print as a dash.
IMPLEMENTED_METHODS = (*PRETRAINED_METHODS, "supervised")
# The fine-tuning job kinds: which (dataset, label fraction) pairs one job trains, per seed.
FINETUNE_KINDS = ("table", "fractions", "transfer")
METHOD_LABELS = {
    "ci": "CI",
    "supervised": "Supervised Baseline",
    "ours": "Ours",
    "global": "Global",
    "global-local": "Gl. Local",
    "global-attention": "Gl. Attention",
}
_NOT_IMPLEMENTED: dict[str, str] = {}
# The test "distortion" of clean images in evaluation files (Table 4's clean row).
CLEAN_TEST = "clean"
# Table 4's column of the per-distortion specialists (ours trained on the row's distortion).
_SPECIALIST = "specialist"
_FAMILY_SHORT = {"mask": "RM", "noise": "GN", "blur": "GB"}
DATASET_LABELS = {
    "imagenet100": "ImageNet-100",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "stl10": "STL-10",
    "resisc45": "RESISC45",
    "camelyon17": "CAMELYON17",
}


def fraction_tag(fraction: float) -> str:
    """Path tag of a label fraction: ``1`` for 100 %, ``0.005`` for 0.5 %."""
    return f"{float(fraction):g}"


def teacher_weights(backbone: str, seed: int | str) -> str:
    """Weights of a backbone pretrained by the pipeline (the miniature's stand-in teachers).

    One teacher per training seed: the students, and the supervised baseline, of seed ``s``
    start from the teacher of seed ``s`` (docs/claims.md, "One stand-in teacher per seed").
    """
    return f"results/teachers/{backbone}/seed{seed}/model.pth"


def fetched_weights(backbone: str) -> dict[str, str]:
    """A hub backbone's weights, fetched once (rule fetch_weights), and the fetch's record."""
    base = f"results/weights/{backbone}"
    return {"weights": f"{base}/model.safetensors", "record": f"{base}/provenance.json"}


def distill_weights(method: str, distortion: str, seed: int | str) -> str:
    """A distilled student's weights."""
    return f"results/distill/{method}/{distortion}/seed{seed}/student.pth"


def finetune_files(
    dataset: str, method: str, distortion: str, fraction: str, seed: int | str
) -> dict[str, str]:
    """The fine-tuned classifier's weights and metrics of one seed."""
    base = f"results/finetune/{dataset}/{method}/{distortion}/frac{fraction}/seed{seed}"
    return {"model": f"{base}/model.pth", "metrics": f"{base}/metrics.json"}


def backbone_of(method: str) -> str:
    """The backbone a method fine-tunes: CLIP's for Contrastive Inversion, else the ViT."""
    return "clip" if method == "ci" else "vit"


def finetune_runs(
    config: Mapping[str, Any], kind: str, seeds: Sequence[int | str] | None = None
) -> list[tuple[str, str, Any]]:
    """The (dataset, fraction tag, seed) triples one fine-tuning job of ``kind`` trains.

    - ``table``: ImageNet-100 with every label (Tables 1 and 3, Fig 2, Fig 3's 100 % point);
    - ``fractions``: ImageNet-100 with each label fraction of Fig 3 below 100 %;
    - ``transfer``: every Table 2 dataset with every label.

    Args:
        config: The merged config.
        kind: One of :data:`FINETUNE_KINDS`.
        seeds: The job's seeds (one job per seed: that seed; the workflow passes ``"{seed}"``
            for its output patterns); default every configured seed.

    Raises:
        KeyError: Unknown ``kind``.
    """
    seeds = config["seeds"] if seeds is None else seeds
    if kind == "table":
        pairs = [("imagenet100", "1")]
    elif kind == "fractions":
        fracs = config["experiments"]["fig3"]["fractions"]
        pairs = [("imagenet100", fraction_tag(f)) for f in fracs if float(f) < 1]
    elif kind == "transfer":
        pairs = [(d, "1") for d in config["experiments"]["table2"]["datasets"]]
    else:
        raise KeyError(f"unknown fine-tuning kind {kind!r} (known: {FINETUNE_KINDS})")
    return [(d, f, s) for d, f in pairs for s in seeds]


# Fig 4's attention maps (rule attention_maps; provenance.json beside it).
FIG4_ATTENTION = "results/eval/fig4/attention.npz"


def ladder_file(method: str, distortion: str) -> str:
    """Fig 2's evaluations of one (method, training distortion): every seed and severity."""
    return f"results/eval/imagenet100/{method}/{distortion}/ladder.json"


def table4_tests(config: Mapping[str, Any]) -> list[str]:
    """Table 4's test settings (its rows): ``experiments.table4.distortions``, then ``clean``.

    The clean row is there unless ``experiments.table4.clean`` is false.
    """
    exp = config["experiments"]["table4"]
    return [*exp["distortions"], *([CLEAN_TEST] if exp.get("clean", True) else [])]


def evaluation_tests(config: Mapping[str, Any], distortion: str) -> list[str]:
    """The test settings an ``evaluate_ladder`` job of a training ``distortion`` evaluates at.

    The training distortion first, then Fig 2's stronger severities when it is a ladder's
    training distortion, then Table 4's test settings (with ``clean``) when it is Table 4's
    mixed training distortion.

    Raises:
        KeyError: ``distortion`` is neither (no evaluation beyond its own test is configured).
    """
    exp = config["experiments"]
    tests = [distortion]
    found = False
    for lad in exp.get("fig2", {}).get("ladders", []):
        if lad["train"] == distortion:
            tests += lad["test"]
            found = True
    if "table4" in exp and exp["table4"]["train"] == distortion:
        tests += table4_tests(config)
        found = True
    if not found:
        raise KeyError(
            f"distortion {distortion!r} is neither a fig2 ladder's train nor "
            "experiments.table4.train"
        )
    return list(dict.fromkeys(tests))


def figure_files(name: str) -> list[str]:
    """A figure's PNG, PDF and data CSV."""
    return [f"results/figures/{name}.{ext}" for ext in ("png", "pdf", "csv")]


def row_label(config: Mapping[str, Any], name: str) -> str:
    """A distortion's label in tables and claims, e.g. ``Random Mask p=0.92``.

    A miniature setting names the paper's it stands for: ``Gaussian Blur (11, 1.6) [for Gaussian
    Blur (45, 11.0)]``.

    Raises:
        KeyError: ``name`` is not a key of the config's ``distortions``.
    """
    spec = config["distortions"][name]
    label = distortion_label(spec)
    stands_for = spec.get("stands_for")
    if stands_for:
        label += f" [for {distortion_label(config['distortions'][stands_for])}]"
    return label


def _mix_text(entry: Mapping[str, Any]) -> str:
    """``mask-0.75, ..., clean, uniformly`` (or ``at rates {...}``) of a mixed entry."""
    names = [*entry["settings"], *(["clean"] if entry.get("include_clean") else [])]
    rates = entry.get("rates")
    how = "uniformly" if rates is None else f"at rates {dict(rates)}"
    return f"{', '.join(names)}, {how}"


def table_spec(config: Mapping[str, Any], name: str) -> TableSpec:
    """The layout of ``table1`` .. ``table4`` under ``config``.

    Table 4 (beyond the paper, issue 17): rows are its test settings (and clean); columns the
    per-distortion specialist (ours, Table 1's model of the row's distortion) and each method
    trained on the mixed distortion; it carries its paired comparisons (ours (mixed) vs the
    specialist and vs supervised (mixed)).

    Raises:
        KeyError: Unknown table.
    """
    exp = config["experiments"][name]
    dists = [(d, row_label(config, d)) for d in exp["distortions"]]
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
    if name == "table2":
        rows = []
        for d in exp["distortions"]:
            family = _FAMILY_SHORT[config["distortions"][d]["family"]]
            for m in exp["methods"]:
                label = "Baseline" if m == "supervised" else METHOD_LABELS[m]
                rows.append((f"{m}/{d}", f"{label} ({family})"))
        columns = [(ds, DATASET_LABELS[ds]) for ds in exp["datasets"]]
        sev = ", ".join(row_label(config, d) for d in exp["distortions"])
        return TableSpec(
            name,
            f"Table 2: transfer, top-1 accuracy (%) on each test split, {seeds} seeds",
            rows=rows,
            columns=columns,
            row_header="Model",
            missing=_NOT_IMPLEMENTED,
            notes=(f"Most severe setting per family: {sev}.",),
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
    if name == "table4":
        rows = [(d, row_label(config, d)) for d in table4_tests(config) if d != CLEAN_TEST]
        if CLEAN_TEST in table4_tests(config):
            rows.append((CLEAN_TEST, "Clean (no distortion)"))
        train = exp["train"]
        columns = [(_SPECIALIST, "Specialist (Ours, trained on the row's distortion)")]
        columns += [(m, f"{METHOD_LABELS[m]} (mixed)") for m in exp["methods"]]
        spec = TableSpec(
            name,
            f"Table 4: one student for every distortion, ImageNet-100 top-1 (%), {seeds} seeds",
            rows=rows,
            columns=columns,
            row_header="Test distortion",
            missing=_NOT_IMPLEMENTED,
            notes=(
                f"(mixed): distilled and fine-tuned on {train!r}: per image and step one of "
                f"{_mix_text(distortion_entry(config, train))}; tested on each row.",
                "Clean row: no specialist (each specialist is trained and tested on one "
                "distortion).",
            ),
        )
        if "ours" not in exp["methods"]:
            return spec
        # Paired tests of the mixed student vs the specialist and vs mixed supervised.
        comps = [
            c for c in reference_comparisons(spec, "ours") if c.b[1] in (_SPECIALIST, "supervised")
        ]
        return replace(
            spec,
            comparisons=comps,
            comparison_title=f"{METHOD_LABELS['ours']} (mixed) minus the specialist and the "
            "mixed supervised baseline",
        )
    raise KeyError(f"unknown table {name!r}")


def table_cells(config: Mapping[str, Any], name: str) -> list[Cell]:
    """The cells of a table that the pipeline computes, with their metrics files.

    Table 4's mixed columns read each seed's result at the row's test setting from the
    method's evaluation file (:func:`ladder_file` of the mixed distortion; ``ladder:`` keys,
    see :class:`robustkd.report.tables.Cell`); its specialist column reads Table 1's metrics.
    """
    exp = config["experiments"][name]
    seeds = config["seeds"]
    cells = []
    if name == "table4":
        for d in exp["distortions"]:
            files = tuple(
                finetune_files("imagenet100", "ours", d, "1", s)["metrics"] for s in seeds
            )
            cells.append(Cell(d, _SPECIALIST, files))
        for m in exp["methods"]:
            ladder = (ladder_file(m, exp["train"]),) * len(seeds)
            for t in table4_tests(config):
                cells.append(Cell(t, m, ladder, key=f"ladder:{t}", seeds=tuple(seeds)))
        return cells
    if name == "table2":
        for d in exp["distortions"]:
            for m in exp["methods"]:
                for ds in exp["datasets"]:
                    files = tuple(finetune_files(ds, m, d, "1", s)["metrics"] for s in seeds)
                    cells.append(Cell(f"{m}/{d}", ds, files))
        return cells
    for m in exp["methods"]:
        if m not in IMPLEMENTED_METHODS:
            continue
        for d in exp["distortions"]:
            files = tuple(finetune_files("imagenet100", m, d, "1", s)["metrics"] for s in seeds)
            row, col = (d, m) if name == "table1" else (m, d)
            cells.append(Cell(row, col, files))
    return cells


# ----------------------------------------------------------------------------------------------
# Beyond the paper: corruptions never trained on (issue 17; target `corruptions`)
# ----------------------------------------------------------------------------------------------

CORRUPTION_SET_ROOT = "results/eval/corruptions/imagenet100"
CORRUPTION_TABLE = "results/tables/corruptions"
CORRUPTION_FIGURE = "results/figures/corruptions"


def corruption_set_files(config: Mapping[str, Any], size: int | str) -> dict[str, str]:
    """Corruption -> its stored file of the corrupted evaluation set at ``size`` px."""
    names = config["experiments"]["corruptions"]["corruptions"]
    return {c: f"{CORRUPTION_SET_ROOT}/{size}px/{c}.npy" for c in names}


def corruption_set_labels(size: int | str) -> str:
    """The labels of the corrupted evaluation set at ``size`` px."""
    return f"{CORRUPTION_SET_ROOT}/{size}px/labels.npy"


def corruption_eval_file(method: str, distortion: str) -> str:
    """One Table 1 model's scores (every seed) on every corruption and severity."""
    return f"results/eval/imagenet100/{method}/{distortion}/corruptions.json"


def corruption_models(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (method, training distortion) pairs evaluated: every Table 1 model."""
    exp = config["experiments"]["table1"]
    return [(m, d) for m in exp["methods"] for d in exp["distortions"]]


def corruption_outputs() -> list[str]:
    """The table (CSV, Markdown, HTML, provenance) and figure (PNG, PDF, CSV, provenance) files."""
    return [
        *(f"{CORRUPTION_TABLE}.{ext}" for ext in ("csv", "md", "html", "provenance.json")),
        *(f"{CORRUPTION_FIGURE}.{ext}" for ext in ("png", "pdf", "csv", "provenance.json")),
    ]
