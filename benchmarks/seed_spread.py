"""Where does the seed-to-seed spread of Table 1's differences come from?

    python benchmarks/seed_spread.py RUN_DIR --configfile config/demo.yaml \\
        --distortions mask-0.90 noise-0.5 blur-9-1.3 [--seeds 0 1 2 3]

``RUN_DIR`` is a finished run of Table 1 (its ``results/``, e.g. after ``make demo``). A seed
``s`` of "ours" sets two things: the distillation of the student (``results/distill/ours/<d>/
seed<s>``) and its fine-tuning, which shares data order, augmentation, label subset and the
evaluation's distortion draws with seed ``s`` of the supervised baseline. The run holds the
diagonal ``(distillation seed s, fine-tuning seed s)``; this script fine-tunes each distilled
student with every *other* fine-tuning seed too (the run's own code, settings read from the
run's provenance records), which makes a full ``seeds x seeds`` grid of the per-seed
difference ``D[a, b] = top1(ours: student a, fine-tuned with seed b) - top1(supervised, seed
b)``. Its two-way analysis of variance (statsmodels ``anova_lm``, no replication) splits the
variance of ``D`` into:

- **distillation**: the student's seed (rows of the grid);
- **fine-tuning**: the fine-tuning seed, shared by both methods (columns);
- **interaction/residual**: what neither explains alone;

and the evaluation's part is read from each metrics file's ``top1_repeats`` (the distortion
draws of ``evaluation.repeats`` passes over the same test set): the variance of the per-repeat
difference divided by the number of repeats. The test set itself is the same for every seed and
adds nothing to the seed-to-seed spread.

Prints figures (standard deviations in points of top-1, and each part's share of the
variance); asserts nothing. The extra fine-tunings are written under ``RUN_DIR/seed_spread/``
(about 20 s each on one core in the miniature); a rerun reuses them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
METRICS = "metrics.json"


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def _finetune(run: Path, d: str, student: int, seed: int, views: dict, out_root: Path) -> dict:
    """top-1 metrics of student ``student`` of ours under ``d``, fine-tuned with ``seed``."""
    from robustkd.engine.jobs import FinetuneRun, finetune_job

    own = run / f"results/finetune/imagenet100/ours/{d}/frac1/seed{student}"
    if student == seed:
        return _metrics(own / "metrics.json")
    out = out_root / d / f"student{student}-finetune{seed}"
    if (out / "metrics.json").exists():
        return _metrics(out / "metrics.json")
    rec = json.loads((own / "provenance.json").read_text())["config"]
    train = {k: v for k, v in rec["train"].items() if k != "workers"}
    cwd = Path.cwd()
    os.chdir(run)  # the records' paths are relative to the run's folder
    try:
        finetune_job(
            backbone=rec["backbone"],
            runs=[
                FinetuneRun(
                    data_dir=rec["dataset"],
                    fraction=float(rec["fraction"]),
                    seed=seed,
                    init=f"results/distill/ours/{d}/seed{student}/student.pth",
                    out=str(out.resolve() / "classifier.pth"),
                )
            ],
            distortion=rec["distortion"],
            train_cfg=train,
            evaluation=rec["evaluation"],
            views=views,
            threads=1,
            device="cpu",
            rule="seed_spread",
        )
    finally:
        os.chdir(cwd)
    return _metrics(out / "metrics.json")


def decompose(grid: pd.DataFrame) -> dict[str, float]:
    """Variance components (points^2) of ``grid`` (rows: distillation seed, columns:
    fine-tuning seed), from the two-way ANOVA without replication; negative estimates are 0."""
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    long = grid.stack().rename("D").reset_index()
    long.columns = ["student", "finetune", "D"]
    table = anova_lm(ols("D ~ C(student) + C(finetune)", data=long).fit())
    ms = table["mean_sq"]
    k_rows, k_cols = grid.shape
    resid = float(ms["Residual"])
    return {
        "distillation": max(0.0, (float(ms["C(student)"]) - resid) / k_cols),
        "fine-tuning": max(0.0, (float(ms["C(finetune)"]) - resid) / k_rows),
        "residual": resid,
    }


def main(argv: list[str] | None = None) -> None:
    from robustkd.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's folder (its results/)")
    ap.add_argument("--configfile", nargs="+", default=["config/demo.yaml"])
    ap.add_argument("--distortions", nargs="+", default=["mask-0.90", "noise-0.5", "blur-9-1.3"])
    ap.add_argument(
        "--seeds", type=int, nargs="+", help="the seeds of the grid (default: the config's)"
    )
    args = ap.parse_args(argv)
    run = args.run.resolve()
    cfg = load_config(ROOT / "config" / "config.yaml", *(ROOT / c for c in args.configfile))
    seeds = args.seeds or [int(s) for s in cfg["seeds"]]
    out_root = run / "seed_spread"
    print(f"run: {run}; seeds {seeds}; D = ours - supervised, points of top-1")
    rows = []
    for d in args.distortions:
        sup = {
            b: _metrics(
                run / f"results/finetune/imagenet100/supervised/{d}/frac1/seed{b}/metrics.json"
            )
            for b in seeds
        }
        ours = {
            (a, b): _finetune(run, d, a, b, cfg["views"], out_root)
            for a, b in itertools.product(seeds, seeds)
        }
        grid = pd.DataFrame(
            [[ours[a, b]["top1"] - sup[b]["top1"] for b in seeds] for a in seeds],
            index=pd.Index(seeds, name="student"),
            columns=pd.Index(seeds, name="finetune"),
        )
        parts = decompose(grid)
        # The evaluation's draws: per-repeat differences at the same fine-tuning seed.
        evals = []
        for (_a, b), m in ours.items():
            diff = np.subtract(m["top1_repeats"], sup[b]["top1_repeats"])
            evals.append(diff.var(ddof=1) / len(diff) if len(diff) > 1 else 0.0)
        parts["evaluation draws (within)"] = float(np.mean(evals))
        diag = np.array([grid.at[s, s] for s in seeds])
        total = sum(v for k, v in parts.items() if not k.startswith("evaluation"))
        print(
            f"\n{d}: the run's per-seed D {np.round(diag, 2).tolist()}, sd {diag.std(ddof=1):.2f}"
        )
        print(grid.round(2).to_string())
        for name, var in parts.items():
            share = f"{var / total:5.0%}" if total > 0 and not name.startswith("evaluation") else ""
            print(f"  {name:28s} sd {np.sqrt(var):5.2f}  {share}")
        rows.append({"distortion": d, "sd_run": diag.std(ddof=1), **parts})
    print("\n(evaluation draws: part of the residual and fine-tuning terms, given apart)")
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
