"""The CRAFT report job: every table and figure of the study, with their provenance."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustkd.craft import layout
from robustkd.craft.report.accuracy import fig_clean_vs_robust, fig_pairwise, fig_per_corruption
from robustkd.craft.report.alignment import fig_alignment
from robustkd.craft.report.breakdowns import write_breakdown_tables
from robustkd.craft.report.runs import Runs, load_runs
from robustkd.craft.report.table import write_craft_table
from robustkd.craft.report.training import fig_cost, fig_nan_counts, fig_training_curves
from robustkd.provenance import now_iso, write_provenance

__all__ = ["report_job", "write_figures"]


def write_figures(runs: Runs, out_dir: str | os.PathLike[str]) -> None:
    """Every figure of :data:`robustkd.craft.layout.FIGURES` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_clean_vs_robust(runs, out / "clean_vs_robust")
    fig_pairwise(runs, out / "pairwise_differences")
    fig_per_corruption(runs, out / "per_corruption")
    fig_training_curves(runs, out / "training_curves")
    fig_nan_counts(runs, out / "nan_counts")
    fig_cost(runs, out / "cost_vs_robustness")
    fig_alignment(runs, out / "alignment_heatmap")


def report_job(config: Mapping[str, Any], rule: str = "craft_report") -> None:
    """Write every table and figure of the study (paths from :mod:`robustkd.craft.layout`).

    The tables carry their cell-level provenance; the figures share one ``provenance.json``
    hashing them and every metrics file they were drawn from.

    Args:
        config: ``craft``, ``methods.craft`` and ``seeds`` of the merged config.
        rule: Rule name for the tables' provenance.
    """
    started = now_iso()
    runs = load_runs(config)
    tables = Path(layout.ROOT) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    provenance = {"rule": rule, "config": dict(config)}
    write_craft_table(runs, tables / "craft_table", config, provenance)
    write_breakdown_tables(runs, config, tables, provenance)
    figures = Path(layout.ROOT) / "figures"
    write_figures(runs, figures)
    write_provenance(
        layout.figures_provenance(),
        rule=rule,
        inputs=[runs.teacher_path, *runs.paths.values()],
        outputs=layout.figure_files(),
        config=config,
        started=started,
    )
    if any(math.isnan(float(v["robust_heldout"])) for v in runs.metrics.values()):
        raise ValueError("a primary metric is NaN")
