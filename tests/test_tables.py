import json

import pandas as pd
import pytest
import yaml

from robustkd.layout import table_cells, table_spec
from robustkd.report.tables import Cell, TableSpec, build_table, distortion_label, format_cell
from tests.conftest import write_top1_metrics


def test_table_mean_std_and_missing_column(tmp_path):
    spec = TableSpec(
        "t",
        "Title",
        rows=[("a", "Row A"), ("b", "Row B")],
        columns=[("ci", "CI"), ("ours", "Ours")],
        row_header="Distortion",
        missing={"ci": "not run yet."},
    )
    cells = [
        Cell("a", "ours", write_top1_metrics(tmp_path, "a", [10.0, 20.0, 30.0])),
        Cell("b", "ours", write_top1_metrics(tmp_path, "b", [50.0])),
    ]
    df = build_table(spec, cells, tmp_path / "t")
    row = df.set_index("row").loc["a"]
    assert row["mean"] == pytest.approx(20.0) and row["std"] == pytest.approx(10.0)
    assert row["n"] == 3 and json.loads(row["values"]) == [10.0, 20.0, 30.0]
    md = (tmp_path / "t.md").read_text()
    assert "| Row A | — | 20.00 ± 10.00 |" in md
    assert "| Row B | — | 50.00 |" in md
    assert "CI: not run yet." in md
    tex = (tmp_path / "t.tex").read_text()
    assert r"20.00 $\pm$ 10.00" in tex and r"\toprule" in tex
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2


def test_format_and_labels():
    assert format_cell(float("nan"), 0.0, 0) == "—"
    assert format_cell(1.234, 0.5, 2) == "1.23 ± 0.50"
    assert (
        distortion_label({"family": "blur", "kernel": 37, "sigma": 9.0})
        == "Gaussian Blur (37, 9.0)"
    )
    assert distortion_label({"family": "mask", "p": 0.9}) == "Random Mask p=0.9"


def test_layout_of_paper_tables(repo_root):
    from robustkd.config import load_config

    cfg = load_config(repo_root / "config" / "config.yaml", repo_root / "config" / "demo.yaml")
    t1 = table_spec(cfg, "table1")
    assert [c for c, _ in t1.columns] == ["ci", "supervised", "ours"]
    assert "[for Gaussian Blur (21, 5.0)]" in dict(t1.rows)["blur-5-0.7"]
    cells = table_cells(cfg, "table1")
    assert {c.column for c in cells} == {"ci", "supervised", "ours"}
    assert all(len(c.metrics) == len(cfg["seeds"]) for c in cells)
    t3 = table_cells(cfg, "table3")
    assert {c.row for c in t3} == {"global", "global-local", "global-attention", "ours"}
    assert {c.column for c in t3} == {"mask-0.90", "noise-0.5", "blur-9-1.3"}
    assert yaml.safe_dump(cfg)  # the resolved config stays serialisable
