"""Fig 3 plots and the claims state the share of labels used, not the one asked (issue 26 A.3).

``fractions: [0.001, 1.0]`` on a set of 6 training images per class keeps one image per class:
16.7 % of the labels. The fine-tuning job records that share in ``metrics.json``, Fig 3 plots
and labels it, the claims say it, and the workflow warns at config time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from robustkd.config import load_config, merge_configs
from robustkd.data.prepared import PreparedWriter
from robustkd.labelfractions import fraction_warnings, share_text
from robustkd.layout import finetune_files, fraction_tag
from robustkd.report.claims import build_claims_table, paper_claims
from robustkd.report.figures import plot_label_fractions
from robustkd.report.paper import fig3_frame

ROOT = Path(__file__).resolve().parents[1]
SMALL = {  # the case: 6 training images per class, fractions 0.001 and 1
    "demo_raw": {"imagenet100": {"train_per_class": 6}},
    "experiments": {"fig3": {"fractions": [0.001, 1.0]}},
}


@pytest.fixture(scope="module")
def small() -> dict:
    base = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")
    return merge_configs(base, SMALL)


def finetune_tiny(tmp_path: Path, fraction: float, train_cfg: dict, min_steps: int = 0) -> Path:
    """Fine-tune a one-block ViT on 12 training images of 2 classes (16 px); its run folder."""
    from robustkd.engine.jobs import FinetuneRun, finetune_job

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    with PreparedWriter(data, ["a", "b"]) as w:
        w.add_array("train", rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), [0, 1] * 6)
        w.add_array("val", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), [0, 1] * 2)
    out = tmp_path / "run" / "model.pth"
    finetune_job(
        backbone={
            "timm_name": "vit_tiny_patch16_224",
            "weights": None,
            "kwargs": {
                "img_size": 16,
                "patch_size": 8,
                "embed_dim": 16,
                "depth": 1,
                "num_heads": 2,
            },
        },
        runs=[FinetuneRun(str(data), fraction, 0, None, str(out), min_steps=min_steps)],
        distortion={"family": "mask", "p": 0.5},
        train_cfg=train_cfg,
        evaluation={"repeats": 1, "batch_size": 8},
        views={"crop_scale": [0.5, 1.0], "preload_size": 16},
        device="cpu",
    )
    return out.parent


def test_finetune_job_records_the_share_of_labels_used(tmp_path):
    run = finetune_tiny(tmp_path, 0.001, {"epochs": 1, "batch_size": 4, "lr": 1e-3})
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fraction"] == 0.001 and metrics["n_train"] == 2
    assert metrics["fraction_used"] == pytest.approx(1 / 6) and metrics["n_train_split"] == 12


def _metrics(config: dict, used: dict[float, float]) -> None:
    """Fig 3's metrics files (relative paths: call inside a working directory)."""
    exp = config["experiments"]["fig3"]
    for method in exp["methods"]:
        for d in exp["distortions"]:
            for f in exp["fractions"]:
                for seed in config["seeds"]:
                    path = Path(
                        finetune_files("imagenet100", method, d, fraction_tag(f), seed)["metrics"]
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    top1 = 40.0 + 30 * f + 5 * (method == "ours") + seed
                    path.write_text(
                        json.dumps({"top1": top1, "fraction": f, "fraction_used": used[f]})
                    )


def test_fig3_plots_and_labels_the_share_used(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(small, {0.001: 1 / 6, 1.0: 1.0})
    df = fig3_frame(small)
    assert sorted(set(df["fraction"])) == pytest.approx([1 / 6, 1.0])
    assert sorted(set(df["fraction_asked"])) == [0.001, 1.0]
    plot_label_fractions(df, tmp_path / "fig3")
    drawn = pd.read_csv(tmp_path / "fig3.csv")
    assert sorted(set(drawn["fraction"])) == pytest.approx([1 / 6, 1.0])
    from robustkd.report.figures.accuracy import _tick_labels

    ticks = _tick_labels(drawn, sorted(set(drawn["fraction"])))
    assert ticks == ["16.7%\n(0.1% asked)", "100%"]


def test_fig3_refuses_a_metrics_file_without_the_share_used(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(small, {0.001: 1 / 6, 1.0: 1.0})
    path = Path(finetune_files("imagenet100", "ours", "mask-0.90", "0.001", 0)["metrics"])
    path.write_text(json.dumps({"top1": 50.0, "fraction": 0.001}))
    with pytest.raises(ValueError, match=f"{path}: no 'fraction_used'.*finetune_fractions"):
        fig3_frame(small)


def test_two_fractions_that_used_the_same_share_are_refused(tmp_path):
    row = {"family": "mask", "method": "ours", "method_label": "Ours", "fraction": 1 / 6}
    rows = [{**row, "fraction_asked": f, "seed": 0, "top1": 50.0} for f in (0.001, 0.002)]
    with pytest.raises(ValueError, match=r"fractions 0\.001, 0\.002 .* all used 16\.7%"):
        plot_label_fractions(pd.DataFrame(rows), tmp_path / "fig3")


def test_the_claims_state_the_share_used(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(small, {0.001: 1 / 6, 1.0: 1.0})
    claims = [c for c in paper_claims(small) if c.source == "Fig 3"]
    rows = build_claims_table(claims, tmp_path / "claims")
    statements = [r["statement"] for r in rows]
    assert statements[0].startswith(
        "Ours beats the supervised baseline with 16.7% (0.1% asked) of the labels, under"
    )
    assert statements[1].startswith(
        "The gap (ours minus supervised) is larger with 16.7% (0.1% asked) of the labels than "
        "with 100%, under"
    )
    assert "16.7% (0.1% asked)" in (tmp_path / "claims.md").read_text()


def test_shares_equal_to_the_fraction_asked_read_as_before():
    assert share_text(0.04, 0.04) == "4%" and share_text(1.0, 1.0) == "100%"
    assert share_text(0.005, 0.005) == "0.5%"  # `:.0%` wrote "0%"
    assert share_text(0.00462, 0.005) == "0.462% (0.5% asked)"


def test_config_time_warning_names_the_fraction_and_the_share_kept(small, tmp_path):
    (warning,) = fraction_warnings(small, workdir=tmp_path)
    assert warning.startswith(
        "config key 'experiments.fig3.fractions': 0.001 keeps 10 training images (16.7% of the "
        "labels"
    )
    assert "more than the 0.06 it asks" in warning and "demo_raw.imagenet100" in warning
    demo = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")
    assert fraction_warnings(demo, workdir=tmp_path) == []  # 4 % of 150: 6 images, as asked
    # Once prepared, the prepared split's class sizes decide: 0.5 of 3 keeps 2 (rounding).
    prepared = tmp_path / "results" / "data" / "imagenet100"
    prepared.mkdir(parents=True)
    rows = "".join(f"train,{k % 2},images/x{k}.jpg,-1,\n" for k in range(6))
    (prepared / "manifest.csv").write_text("split,label,path,index,sha256\n" + rows)
    half = merge_configs(demo, {"experiments": {"fig3": {"fractions": [0.5, 0.6, 1.0]}}})
    warnings = fraction_warnings(half, workdir=tmp_path)
    assert any("0.5 keeps 4 training images (66.7% of the labels" in w for w in warnings)
    assert any("0.5, 0.6 keep the same 4 images" in w for w in warnings)


def test_snakemake_warns_at_config_time(tmp_path):
    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump(SMALL))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    cmd += ["--list-target-rules", "--configfile", str(ROOT / "config" / "demo.yaml"), str(overlay)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert "warning: config key 'experiments.fig3.fractions': 0.001 keeps 10" in said
