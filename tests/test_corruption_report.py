"""Beyond the paper: the corruption table's arithmetic (mCE, paired tests), provenance, audit,
the stored-set reader and the new targets' dry run on the tiny overlay."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustkd.audit import audit
from robustkd.engine.corrupted import ArraySet, summarise_seed
from robustkd.engine.evaluate import evaluate_classifier
from robustkd.provenance import record_beside, write_provenance
from robustkd.report.corruptions import (
    build_corruption_table,
    long_frame,
    mce_per_seed,
    plot_corruptions,
    row_values,
)
from tests import bounded

ROOT = Path(__file__).resolve().parents[1]

# Hand-made top-1 (%): method -> seed -> corruption -> per-severity values (2 severities).
TOP1 = {
    "supervised": {
        0: {"fog": [80, 60], "snow": [70, 50]},  # errors: fog 20 + 40 = 60, snow 30 + 50 = 80
        1: {"fog": [90, 70], "snow": [60, 40]},  # fog 10 + 30 = 40, snow 40 + 60 = 100
    },
    "ours": {
        0: {"fog": [85, 75], "snow": [70, 50]},  # fog 15 + 25 = 40, snow 80
        1: {"fog": [90, 90], "snow": [80, 70]},  # fog 10 + 10 = 20, snow 20 + 30 = 50
    },
}


def _write_models(root: Path, top1: dict = TOP1, drop: tuple = ()) -> list[tuple[str, str, str]]:
    """One corruptions.json (+ provenance) per method, as the evaluation job writes them.

    Paths are relative to ``root``, the working directory (as in a pipeline run). ``drop``:
    (method, seed, corruption, severity) cells left out.
    """
    assert Path.cwd() == root
    files = []
    for method, seeds in top1.items():
        out = Path("results/eval/imagenet100") / method / "mask-0.90" / "corruptions.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        results = [
            {"seed": k, "corruption": c, "severity": s + 1, "top1": float(v), "top5": 100.0}
            for k, per_c in seeds.items()
            for c, vals in per_c.items()
            for s, v in enumerate(vals)
            if (method, k, c, s + 1) not in drop
        ]
        per_seed = {str(k): summarise_seed([r for r in results if r["seed"] == k]) for k in seeds}
        out.write_text(json.dumps({"results": results, "per_seed": per_seed}))
        write_provenance(record_beside(out), rule="evaluate_corruptions", outputs=[out])
        files.append((method, "mask-0.90", str(out)))
    return files


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project root as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_mce_by_hand(project):
    files = _write_models(project)
    mce = mce_per_seed(long_frame(files), "supervised").set_index(["method", "seed"])["mce"]
    # seed 0: CE_fog = 40/60, CE_snow = 80/80 -> 100 * (2/3 + 1) / 2 = 83.33
    # seed 1: CE_fog = 20/40, CE_snow = 50/100 -> 50
    assert mce["ours", 0] == pytest.approx(100 * (40 / 60 + 1) / 2)
    assert mce["ours", 1] == pytest.approx(50.0)
    assert mce["supervised", 0] == pytest.approx(100.0)
    values = row_values(long_frame(files), "supervised").set_index(["row", "method", "seed"])
    assert values.loc[("fog", "ours", 0), "value"] == pytest.approx(80.0)
    assert values.loc[("severity 2", "ours", 1), "value"] == pytest.approx(80.0)  # (90 + 70) / 2
    assert values.loc[("mean", "supervised", 1), "value"] == pytest.approx(65.0)


def test_mce_errors_name_the_problem(project):
    files = _write_models(project)
    df = long_frame(files)
    with pytest.raises(ValueError, match="baseline: 'ci' is not among the evaluated methods"):
        mce_per_seed(df, "ci")
    perfect = df.assign(top1=np.where(df["method"] == "supervised", 100.0, df["top1"]))
    with pytest.raises(ValueError, match="zero error on .*CE undefined"):
        mce_per_seed(perfect, "supervised")


def test_table_paired_tests_and_audit(project):
    tmp_path = project
    files = _write_models(project)
    (tmp_path / "results" / "tables").mkdir(parents=True)
    prefix = "results/tables/corruptions"
    table = build_corruption_table(
        files,
        prefix,
        baseline="supervised",
        methods=["supervised", "ours"],
        provenance={"rule": "corruption_report", "config": {}},
    )
    row = table[(table["row"] == "mCE") & (table["method"] == "ours")].iloc[0]
    a = [100 * (40 / 60 + 1) / 2, 50.0]
    assert row["mean"] == pytest.approx(np.mean(a))
    assert row["diff"] == pytest.approx(np.mean(a) - 100)
    # Paired t over 2 seeds: d = a - 100, t = mean / (sd / sqrt 2), 1 degree of freedom.
    d = np.array(a) - 100
    t = d.mean() / (d.std(ddof=1) / math.sqrt(2))
    assert row["p"] == pytest.approx(2 * (0.5 - math.atan(abs(t)) / math.pi))  # Cauchy tail
    md = Path(f"{prefix}.md").read_text()
    assert "| mCE | 100.0 ± 0.0 | 66.7 ± 23.6 |" in md
    assert "CE_c = sum_s err(method, c, s) / sum_s err(Supervised Baseline, c, s)" in md
    assert audit("corruptions", root=tmp_path, echo=lambda *_: None).ok
    # A tampered evaluation of our method fails the audit.
    ours = tmp_path / files[1][2]
    rec = json.loads(ours.read_text())
    rec["per_seed"]["0"]["per_corruption"]["fog"] = 99.0
    ours.write_text(json.dumps(rec))
    assert not audit("corruptions", root=tmp_path, echo=lambda *_: None).ok


def _with_saturate(value: float) -> dict:
    """TOP1 plus an extra (non-benchmark) corruption on which every method scores ``value``."""
    return {
        m: {k: {**per_c, "saturate": [value, value / 2]} for k, per_c in seeds.items()}
        for m, seeds in TOP1.items()
    }


def test_mce_and_mean_rows_are_on_the_benchmark_corruptions_only(project):
    """An extra corruption (saturate) gets its own row and moves neither mCE, mean nor severity."""
    plain = row_values(long_frame(_write_models(project)), "supervised")
    (project / "results" / "tables").mkdir(parents=True)
    prefix = "results/tables/corruptions"
    files = _write_models(project, _with_saturate(5.0))
    values = row_values(long_frame(files), "supervised")
    key = ["row", "method", "seed"]
    same = plain.merge(values, on=key, suffixes=("", "_extra"))
    assert len(same) == len(plain)  # every row of the benchmark's is there, equal
    assert np.allclose(same["value"], same["value_extra"]), same
    table = build_corruption_table(
        files,
        prefix,
        baseline="supervised",
        methods=["supervised", "ours"],
        provenance={"rule": "corruption_report", "config": {}},
        corruptions=["fog", "snow", "saturate"],
        severities=[1, 2],
    )
    assert list(table["row"].drop_duplicates()) == [
        *("fog", "snow", "severity 1", "severity 2", "mean", "mCE", "saturate")
    ]
    saturate = table[(table["row"] == "saturate") & (table["method"] == "ours")].iloc[0]
    assert saturate["mean"] == pytest.approx(3.75)  # (5 + 2.5) / 2
    md = Path(f"{prefix}.md").read_text()
    assert "Top-1 (%) on 2 of the 15 benchmark corruptions (fog, snow)" in md
    assert "Extra corruptions, not of the benchmark" in md
    assert "| mCE | 100.0 ± 0.0 | 66.7 ± 23.6 |" in md
    # The cells list the values they are computed from, which the audit reads back.
    assert audit("corruptions", root=project, echo=lambda *_: None).ok


@pytest.mark.parametrize(
    ("drop", "severities", "needle"),
    [
        ({("ours", 1, "fog", 2)}, [1, 2], "method 'ours' (trained on mask-0.90), corruption "
         "'fog', severity 2, seed 1"),
        ({("supervised", 0, "snow", 1)}, [1, 2], "corruption 'snow', severity 1, seed 0"),
        (set(), [1, 2, 3], "corruption 'fog', severity 3, seed 0 (and 3 more cells)"),
    ],
)  # fmt: skip
def test_a_missing_cell_stops_the_table_naming_it(project, drop, severities, needle):
    files = _write_models(project, drop=tuple(drop))
    (project / "results" / "tables").mkdir(parents=True)
    with pytest.raises(ValueError) as info:
        build_corruption_table(
            files,
            "results/tables/corruptions",
            baseline="supervised",
            methods=["supervised", "ours"],
            provenance={"rule": "corruption_report", "config": {}},
            corruptions=["fog", "snow"],
            severities=severities,
        )
    assert needle in str(info.value) and "corruptions.json" in str(info.value)
    assert "forcerun evaluate_corruptions" in str(info.value)
    assert not list((project / "results" / "tables").iterdir())  # nothing half-written


def test_figure_writes_its_data(project):
    tmp_path = project
    files = _write_models(project)
    data = plot_corruptions(files, tmp_path / "fig", methods=["supervised", "ours"])
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"fig.{ext}").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "fig.csv")
    assert len(csv) == len(data) == 2 * 2 * 2 * 2  # methods x seeds x corruptions x severities


def test_stored_images_feed_the_evaluation_engine():
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    images[2:] = 255
    labels = np.array([0, 0, 1, 1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = 1.0
        model[1].bias[:] = torch.tensor([10.0, 0.0])  # class 1 only where pixels are bright
    m = evaluate_classifier(
        model,
        ArraySet(images, labels),
        None,
        lambda x: x,
        repeats=3,
        seed=0,
        batch_size=3,
        device=torch.device("cpu"),
    )
    assert m["top1"] == 100.0 and m["repeats"] == 1 and m["n"] == 4
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        ArraySet(images, labels[:3])


def _beyond_dry_run(tmp_path, overlay, what):
    """``snakemake beyond --dry-run`` on the demo config with ``overlay`` over it."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "beyond",
        "--dry-run",
        "--directory",
        str(tmp_path),
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(ROOT / "config/demo.yaml"),
        str(overlay),
    ]
    return bounded.run(cmd, what=what, timeout=bounded.QUICK, cwd=ROOT)


def test_corruption_targets_dry_run_on_the_tiny_overlay(tmp_path):
    proc = _beyond_dry_run(tmp_path, ROOT / "config/tiny.yaml", "snakemake beyond --dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # tiny: 3 Table 1 methods x 2 distortions, one stored set at the backbones' 16 px.
    assert "results/eval/corruptions/imagenet100/16px/labels.npy" in out
    for rule, n in (("corrupt_evalset", 1), ("evaluate_corruptions", 6), ("corruption_report", 1)):
        assert any(line.split() == [rule, str(n)] for line in out.splitlines()), rule


def test_bad_baseline_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments:\n  corruptions: {baseline: alexnet}\n")
    proc = _beyond_dry_run(tmp_path, bad, "snakemake with a bad baseline")
    assert proc.returncode != 0
    assert "experiments.corruptions.baseline: 'alexnet'" in proc.stdout + proc.stderr
