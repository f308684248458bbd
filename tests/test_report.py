"""Honest statistics over seeds (paired comparisons) and the Snakemake report."""

import json
import math
import sys
import zipfile

import numpy as np
import pytest
from scipy import stats

from robustkd.config import load_config
from robustkd.layout import table_spec
from robustkd.report.stats import format_paired, pair_by_seed, paired_test
from robustkd.report.tables import (
    Cell,
    TableSpec,
    build_table,
    reference_comparisons,
    with_reference_comparisons,
)
from tests import bounded
from tests.conftest import write_top1_metrics

# ----------------------------------------------------------------------------------------------
# Paired tests
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_test_matches_scipy(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(60, 3, n), rng.normal(58, 3, n)
    r = paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert r.n == n and r.seeds == tuple(range(n))
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    d = a - b
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    assert (r.ci_low, r.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    # The interval excludes 0 exactly when the test rejects at 5 %.
    assert (r.ci_low > 0 or r.ci_high < 0) == (r.p < 0.05)


def test_degenerate_pairs_report_no_test():
    one = paired_test([61.0], [60.0], seeds=[4])
    assert one.mean_diff == 1.0 and math.isnan(one.p) and one.seeds == (4,)
    assert format_paired(one) == "+1.00 (n = 1, no test)"
    same = paired_test([61.0, 62.0, 63.0], [60.0, 61.0, 62.0])
    assert same.std_diff == 0.0 and math.isnan(same.p) and math.isnan(same.ci_low)
    assert format_paired(same) == "+1.00 (same in all 3 seeds, no test)"
    assert json.dumps(same.as_dict())  # NaN -> null: valid JSON
    assert same.as_dict()["p"] is None
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no values"):
        paired_test([], [])


def test_format_and_pairing_by_seed():
    r = paired_test([50.0, 52.0, 57.0], [48.0, 51.0, 50.0])
    assert format_paired(r).startswith("+3.33 [") and ", p = 0." in format_paired(r)
    seeds, a, b = pair_by_seed({0: 1.0, 1: 2.0, 2: 3.0}, {2: 0.0, 0: 1.0})
    assert seeds == (0, 2) and a == [1.0, 3.0] and b == [1.0, 0.0]


# ----------------------------------------------------------------------------------------------
# The comparisons the paper makes
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(repo_root):
    return load_config(repo_root / "config" / "config.yaml", repo_root / "config" / "demo.yaml")


def test_comparisons_of_the_three_tables(demo):
    t1 = table_spec(demo, "table1")
    comps = reference_comparisons(t1, "ours")
    # Table 1: per row (distortion), ours vs each baseline column.
    assert len(comps) == len(t1.rows) * 2
    assert {c.b[1] for c in comps} == {"ci", "supervised"}
    assert all(c.a == (c.b[0], "ours") for c in comps)

    t3 = table_spec(demo, "table3")
    comps = reference_comparisons(t3, "ours")
    # Table 3: per column (distortion), the full loss vs each ablation row.
    assert {c.b[0] for c in comps} == {"global", "global-local", "global-attention"}
    assert len(comps) == 3 * len(t3.columns) and all(c.a == ("ours", c.b[1]) for c in comps)

    t2 = table_spec(demo, "table2")
    comps = reference_comparisons(t2, "ours")
    # Table 2: per cell (dataset x family), ours vs each baseline of the same distortion.
    dists = demo["experiments"]["table2"]["distortions"]
    assert len(comps) == 2 * len(dists) * len(t2.columns)
    for c in comps:
        assert c.a[0] == "ours/" + c.b[0].split("/")[1] and c.a[1] == c.b[1]
        assert c.b[0].split("/")[0] in {"supervised", "ci"}

    with pytest.raises(KeyError, match="neither a row nor a column"):
        reference_comparisons(t1, "nope")


def test_table_prints_paired_comparisons_and_provenance(tmp_path):
    spec = TableSpec(
        "t",
        "Title",
        rows=[("a", "Row A"), ("b", "Row B")],
        columns=[("ci", "CI"), ("base", "Base"), ("ours", "Ours")],
        row_header="Distortion",
        missing={"ci": "not run."},
    )
    cells = [
        Cell("a", "base", write_top1_metrics(tmp_path, "ab", [50.0, 51.0, 55.0])),
        Cell("a", "ours", write_top1_metrics(tmp_path, "ao", [52.0, 54.0, 56.0])),
        # Row B: ours has seeds 1 and 2 only: paired on the 2 shared seeds.
        Cell("b", "base", write_top1_metrics(tmp_path, "bb", [40.0, 42.0, 41.0])),
        Cell("b", "ours", write_top1_metrics(tmp_path, "bo", [45.0, 44.0], seeds=[1, 2])),
    ]
    df = build_table(with_reference_comparisons(spec, "ours"), cells, tmp_path / "t")
    assert json.loads(df.set_index("column").loc["ours"].iloc[1]["seeds"]) == [1, 2]

    expected = format_paired(paired_test([52.0, 54.0, 56.0], [50.0, 51.0, 55.0]))
    md = (tmp_path / "t.md").read_text()
    assert "Paired comparisons (Ours minus each other method)" in md
    assert "|  | vs CI | vs Base |" in md
    assert f"| Row A | — | {expected} |" in md
    row_b = format_paired(paired_test([45.0, 44.0], [42.0, 41.0], seeds=[1, 2]))
    assert f"| Row B | — | {row_b} |" in md
    assert "n = 2, 3" in md  # the paired n of each comparison
    html = (tmp_path / "t.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and expected in html
    assert "54.00 ± 2.00" in html
    tex = (tmp_path / "t.tex").read_text()
    assert r"\toprule" in tex and "vs Base" in tex and tex.count(r"\begin{tabular}") == 2

    prov = json.loads((tmp_path / "t.provenance.json").read_text())
    assert prov["rule"] == "build_table" and len(prov["inputs"]) == 11
    cell = next(c for c in prov["table"]["cells"] if (c["row"], c["column"]) == ("b", "ours"))
    assert [s["seed"] for s in cell["seeds"]] == [1, 2]
    assert cell["row_label"] == "Row B" and cell["n"] == 2
    comp = prov["table"]["comparisons"]
    assert [c["result"] is None for c in comp] == [True, False, True, False]  # CI: no data
    assert comp[1]["result"]["text"] == expected


def test_bad_metrics_files_name_the_file(tmp_path):
    spec = TableSpec("t", "T", rows=[("a", "A")], columns=[("ours", "Ours")])
    good = write_top1_metrics(tmp_path, "good", [1.0])
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json: metrics file not found"):
        build_table(spec, [Cell("a", "ours", (*good, missing))], tmp_path / "t")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="bad.json: malformed metrics file"):
        build_table(spec, [Cell("a", "ours", (str(bad),))], tmp_path / "t")
    bad.write_text('{"top5": 3}')
    with pytest.raises(KeyError, match="bad.json: no 'top1'"):
        build_table(spec, [Cell("a", "ours", (str(bad),))], tmp_path / "t")


# ----------------------------------------------------------------------------------------------
# The Snakemake report of the tiny DAG
# ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_snakemake_report_shows_tables_and_figures(tiny_run, tmp_path):
    report = tmp_path / "report.zip"
    cmd = [sys.executable, "-m", "snakemake", "--report", str(report)]
    cmd += ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
    proc = bounded.run(cmd, what="snakemake --report", timeout=bounded.JOB, cwd=tiny_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        page = z.read(next(n for n in names if n.endswith("report.html"))).decode()
        files = {n.rsplit("/", 1)[-1]: n for n in names}
        tables = {t: z.read(files[f"{t}.html"]).decode() for t in ("table1", "table2", "table3")}
        prov = json.loads(z.read(files["table1.provenance.json"]))
    for name in ("fig2.png", "fig3.png", "fig4.png"):
        assert name in files and f"results/figures/{name}" in page
    for t, html in tables.items():
        assert f"results/tables/{t}.html" in page and f"results/tables/{t}.provenance.json" in page
        assert "± " in html and "Paired comparisons" in html, t
    # Categories, captions (rendered from workflow/report/*.rst) and the workflow description.
    assert '"Tables": {"Main paper"' in page and '"Figures": {"Main paper"' in page
    assert "Table 1: robustness on ImageNet-100." in page
    assert "Figure 2: severity ladders." in page and "Figure 4: attention maps." in page
    assert "Auditing a number." in page and "offline miniature" in page
    assert prov["table"]["cells"] and prov["rule"] == "make_table"
