"""Honest statistics over seeds (paired comparisons) and the Snakemake report."""

import json
import math
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from robustkd.config import load_config
from robustkd.layout import table_spec
from robustkd.report.claims_text import claims_markdown
from robustkd.report.pages import (
    is_report_command,
    markdown_html,
    markdown_page,
    provenance_html,
)
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
# Pages of the report: Markdown and provenance records as HTML
# ----------------------------------------------------------------------------------------------


def test_markdown_pages_keep_tables_lists_and_escape_text():
    rows = [
        {
            "source": "Table 1",
            "statement": "Ours beats CI under <mask> p=0.9",
            "text": "+2.60 [+1.00, +4.20], p = 0.010",
            "p_adj": 0.03,
            "mde": 1.5,
            "verdict": "supported",
            "n": 3,
        }
    ]
    md = claims_markdown(rows, {"alpha": 0.05, "power": 0.8, "equivalence_margin": 2.0})
    page = "\n".join(markdown_html(md))
    assert "<h1>The main paper's claims, tested on this run</h1>" in page
    assert "1 claims: 1 supported, 0 contradicted" in page
    assert page.count("<th>") == 6 and "<th>Verdict</th>" in page
    assert "<td>Ours beats CI under &lt;mask&gt; p=0.9</td>" in page and "<mask>" not in page
    assert page.count("<li>") == 3 and "|---" not in page
    title = "<title>The main paper&#x27;s claims, tested on this run</title>"
    assert title in markdown_page(md) and markdown_page(md).startswith("<!DOCTYPE html>")
    corruption = "# Title\n\nText **bold** and `code`.\n\n| | A |\n|---|---|\n| x | 1 |\n"
    assert markdown_html(corruption) == [
        "<h1>Title</h1>",
        '<p class="note">Text <strong>bold</strong> and <code>code</code>.</p>',
        '<table class="md">',
        "<thead><tr>",
        "<th></th>",
        "<th>A</th>",
        "</tr></thead>",
        "<tbody>",
        "<tr><td>x</td><td>1</td></tr>",
        "</tbody>",
        "</table>",
    ]


def test_an_mde_above_100_points_is_shown_as_more_than_100():
    row = {"source": "Table 2", "text": "+1.00 [-9.00, +11.00], p = 0.50", "p_adj": 1.0}
    rows = [
        {**row, "statement": "wide", "mde": 1089.7, "verdict": "undecided", "n": 3},
        {**row, "statement": "edge", "mde": 100.0, "verdict": "undecided", "n": 3},
        {**row, "statement": "narrow", "mde": 4.43, "verdict": "undecided", "n": 3},
    ]
    md = claims_markdown(rows, {"alpha": 0.05, "power": 0.8, "equivalence_margin": 2.0})
    assert "| wide | +1.00 [-9.00, +11.00], p = 0.50 | 1.00 | > 100 | undecided |" in md
    assert "| edge | +1.00 [-9.00, +11.00], p = 0.50 | 1.00 | 100.0 | undecided |" in md
    assert "| narrow | +1.00 [-9.00, +11.00], p = 0.50 | 1.00 | 4.4 | undecided |" in md
    assert "1089" not in md


def test_provenance_page_shows_every_cell_and_seed(tmp_path):
    spec = TableSpec("t", "Title", rows=[("a", "Row A")], columns=[("base", "Base"), ("ours", "O")])
    cells = [
        Cell("a", "base", write_top1_metrics(tmp_path, "ab", [50.0, 51.0])),
        Cell("a", "ours", write_top1_metrics(tmp_path, "ao", [52.0, 54.0])),
    ]
    build_table(spec, cells, tmp_path / "t")
    record = json.loads((tmp_path / "t.provenance.json").read_text())
    page = provenance_html(record, "results/tables/t.csv")
    assert page.startswith("<!DOCTYPE html>") and "<h1>Provenance: Title</h1>" in page
    assert '<h2 class="cell">Row A | O: 53.00 ± 1.41, n = 2</h2>' in page
    assert "robustkd audit results/tables/t.csv --cell a ours" in page
    for cell in record["table"]["cells"]:
        for seed in cell["seeds"]:
            assert f"<code>{seed['metrics']}</code>" in page
            assert seed["sha256"][:16] in page
    assert page.count("<tr><td>") == 4  # 2 cells x 2 seeds


@pytest.mark.parametrize(
    ("argv", "only_report"),
    [
        ("snakemake --report", True),
        ("snakemake all --report report.zip --configfile c.yaml", True),
        ("snakemake --report=report.html", True),
        ("snakemake --reporter html --report-html-path r.html", True),
        ("snakemake all --report report.zip --report-after-run", False),
        ("snakemake all --cores 2", False),
        ("snakemake --report-stylesheet s.css all", False),
    ],
)
def test_a_report_command_is_recognised(argv, only_report):
    assert is_report_command(argv.split()) is only_report


# ----------------------------------------------------------------------------------------------
# Captions: every workflow/report/*.rst renders under the paper, demo and tiny configs
# ----------------------------------------------------------------------------------------------

CAPTION_CONFIGS = {
    "paper": [],
    "demo": ["config/demo.yaml"],
    "tiny": ["config/demo.yaml", "config/tiny.yaml"],
}


def _caption_cases(name: str) -> list[dict]:
    """The snakemake fields (wildcards, params, rule) each caption is rendered with."""
    tables = [{"wildcards": {"table": t}, "rule": "make_table"} for t in TABLES]
    return {
        "table.rst": tables,
        "provenance_page.rst": tables,
        "table_provenance.rst": [*tables, {"wildcards": {}, "rule": "claims"}],
        "figure.rst": [{"wildcards": {"figure": f}} for f in ("fig2", "fig3")],
        "fig4.rst": [{"params": {"seed": 0}}],
        "distill_loss.rst": [
            {"params": {"runs": [("ours", "mask-0.90", 0, "s.pth"), ("ci", "mask-0.90", 0, "c")]}}
        ],
    }.get(name, [{}])


TABLES = ("table1", "table2", "table3", "table4")


@pytest.mark.parametrize("overlay", sorted(CAPTION_CONFIGS))
def test_every_caption_renders_from_the_config(repo_root, overlay):
    """Each caption is a Jinja template of RST (as Snakemake renders it): it renders under each
    config without a Jinja or docutils error, and states the config's counts."""
    from types import SimpleNamespace

    import jinja2
    from docutils.core import publish_parts

    cfg = load_config(
        repo_root / "config" / "config.yaml", *(repo_root / c for c in CAPTION_CONFIGS[overlay])
    )
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    captions = sorted((repo_root / "workflow" / "report").glob("*.rst"))
    assert len(captions) >= 20
    rendered = {}
    for path in captions:
        for case in _caption_cases(path.name):
            wildcards = {"table": "", **case.get("wildcards", {})}  # a missing name is falsy
            snakemake = SimpleNamespace(
                config=cfg,
                wildcards=SimpleNamespace(**wildcards),
                params=SimpleNamespace(**case.get("params", {})),
                rule=case.get("rule", "rule"),
            )
            text = env.from_string(path.read_text()).render(
                snakemake=snakemake, categories={}, files=[]
            )
            parts = publish_parts(
                text, writer="html", settings_overrides={"halt_level": 2, "report_level": 4}
            )
            key = (path.stem, *case.get("wildcards", {}).values())
            rendered[key] = re.sub(r"<[^>]+>|\s+", " ", parts["body"])
            assert rendered[key].strip(), key
    exp, seeds = cfg["experiments"], len(cfg["seeds"])
    assert f"on {len(exp['table1']['distortions'])} settings" in rendered["table", "table1"]
    assert f"over {seeds} seed" in rendered["table", "table3"]
    assert f"{len(exp['table2']['datasets'])} transfer datasets" in rendered["table", "table2"]
    assert f"{len(cfg['methods']['craft'])} methods" in rendered["craft_clean_vs_robust",]
    craft = cfg["craft"]["corruptions"]
    assert f"mean over {len(craft['evaluate'])} corruptions" in rendered["craft_table",]
    assert "Not built when this report was made: Table 1" in rendered["workflow",]
    assert "stand-in teacher" not in " ".join(rendered.values())


# ----------------------------------------------------------------------------------------------
# The Snakemake report of the tiny DAG
# ----------------------------------------------------------------------------------------------

CONFIGS = ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _report(workdir: Path, out: Path, *targets: str):
    cmd = [*SNAKEMAKE, *targets, "--report", str(out), *CONFIGS]
    what = f"snakemake {' '.join(targets)} --report".replace("  ", " ")
    return bounded.run(cmd, what=what, timeout=bounded.JOB, cwd=workdir)


def _report_vars(page: str) -> tuple[dict, dict]:
    """The report's ``results`` (path -> name, labels, caption) and ``categories``."""
    found = []
    for name in ("results", "categories"):
        i = page.index(f"var {name} = ", page.index(f'<script id="{name}">')) + len(name) + 7
        found.append(json.JSONDecoder().raw_decode(page, i)[0])
    return found[0], found[1]


def _unpack(report: Path, into: Path) -> Path:
    """Unpack a report.zip; return its report.html."""
    with zipfile.ZipFile(report) as z:
        z.extractall(into)
    return next(into.rglob("report.html"))


@pytest.fixture(scope="module")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """``snakemake --report report.zip`` of the tiny run after `all` and `beyond`.

    `beyond` (Table 4 and the corruptions) is already built when tests/test_dag_paths.py ran
    first, as in the full suite; alone, this module builds it (a few minutes).
    """
    proc = bounded.run(
        [*SNAKEMAKE, "beyond", "--cores", "2", *CONFIGS],
        what="snakemake beyond on the tiny run",
        timeout=bounded.DAG,
        cwd=tiny_run,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path_factory.mktemp("report") / "report.zip"
    proc = _report(tiny_run, report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not built and are left out" not in proc.stderr, proc.stderr[-2000:]
    return report


@pytest.fixture(scope="module")
def tiny_report_html(tiny_report, tiny_run) -> Path:
    """The same report as one self-contained page (``--report report.html``)."""
    report = tiny_report.with_name("report.html")
    proc = _report(tiny_run, report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return report


@pytest.mark.e2e
def test_snakemake_report_shows_everything_with_true_captions(tiny_run, tiny_report):
    with zipfile.ZipFile(tiny_report) as z:
        index = next(n for n in z.namelist() if n.endswith("report.html"))
        page = z.read(index).decode()
        results, categories = _report_vars(page)
        root = index.rsplit("/", 1)[0]

        def read(path: str) -> str:
            return z.read(f"{root}/{results[path]['data_uri']}").decode()

        tables = {t: read(f"results/tables/{t}.html") for t in ("table2", "table3")}
        prov_page = read("results/report/provenance/table1.html")
    shown = {
        c: {s: [Path(p).name for p in ps] for s, ps in subs.items()}
        for c, subs in categories.items()
    }
    assert sorted(shown) == ["CRAFT study", "Claims", "Figures", "Provenance", "Tables"]
    assert sorted(shown["Tables"]["Main paper"]) == ["table1.html", "table2.html", "table3.html"]
    assert sorted(shown["Tables"]["Beyond the paper"]) == ["corruptions.html", "table4.html"]
    assert sorted(shown["Figures"]["Main paper"]) == ["fig2.png", "fig3.png", "fig4.png"]
    assert shown["Figures"]["Training"] == ["distill_loss.png"]
    assert shown["Figures"]["Beyond the paper"] == ["corruptions.png"]
    assert list(shown["Claims"].values()) == [["claims.html"]]
    assert len(shown["CRAFT study"]["Tables"]) == 3 and len(shown["CRAFT study"]["Figures"]) == 7
    provenance = categories["Provenance"]["Other"]
    for t in ("table1", "table2", "table3", "table4"):
        assert f"results/report/provenance/{t}.html" in provenance
        assert f"results/tables/{t}.provenance.json" in provenance
    for t, html in tables.items():
        assert "± " in html and "Paired comparisons" in html, t
    assert '<h2 class="cell">' in prov_page and "/seed1/metrics.json" in prov_page
    # Every caption was rendered (none empty), from the run's config: the tiny overlay's 2 seeds,
    # its 2 Table 1 settings, 5 CRAFT methods, 4 of CIFAR-10-C's corruptions.
    caption = {
        Path(p).name if "provenance/" not in p else p: r["caption"] for p, r in results.items()
    }
    assert all(caption.values()), [p for p, c in caption.items() if not c]
    assert "on 2 settings (rows:" in caption["table1.html"]
    assert "over 2 seeds" in caption["table1.html"] and "Table 1: robustness" in page
    assert "each of 3 test settings" in caption["table4.html"]
    assert "mean over 4 corruptions x\n2 severities" in caption["craft_table.html"]
    assert "ERM, LogitKD, AttentionKD, CRD and CRAFT" in caption["craft_table.html"]
    assert "Figure 2: severity ladders." in page and "Figure 4: attention maps." in page
    # The claims' label counts the verdicts of the run's claims table.
    import pandas as pd

    verdicts = pd.read_csv(tiny_run / "results/tables/claims.csv")["verdict"].value_counts()
    label = results["results/tables/claims.html"]["labels"]["verdicts"]
    n = {v: int(verdicts.get(v, 0)) for v in ("supported", "contradicted", "equivalent")}
    assert label.startswith(", ".join(f"{c} {v}" for v, c in n.items())), label
    # The front page: the run as configured, nothing the demo does not do.
    text = re.sub(r"(\\n|\s)+", " ", page)
    assert "offline miniature" in text and "Auditing a number." in text
    assert "over 2 seeds (0, 1;" in text and "4 classes, 6 training and 3 validation images" in text
    assert "stand-in teacher" not in text and "within one standard deviation" not in text
    assert "Not built when this report was made" not in text


@pytest.mark.e2e
def test_report_after_a_partial_run_shows_what_exists(tiny_run, tiny_report, tmp_path):
    """After a partial run (here: Tables 2-4, the claims and CRAFT's report moved away),
    `snakemake --report` reports what exists, and `snakemake table1 --report` Table 1."""
    hidden = [
        p
        for pattern in ("results/tables/table[234].*", "results/tables/claims.*")
        for p in tiny_run.glob(pattern)
    ]
    hidden += list(tiny_run.glob("results/report/provenance/table[234].*"))
    hidden += [tiny_run / "results/craft/tables", tiny_run / "results/craft/figures"]
    moved = {p: tmp_path / "hidden" / p.relative_to(tiny_run) for p in hidden}
    try:
        for src, dst in moved.items():
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
        proc = _report(tiny_run, tmp_path / "partial.zip")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert re.search(r"Report of what exists: \d+ of the \d+ outputs", proc.stderr)
        page = _unpack(tmp_path / "partial.zip", tmp_path / "partial").read_text()
        results, categories = _report_vars(page)
        assert "results/tables/table1.html" in results and "results/figures/fig2.png" in results
        assert not any(
            p.startswith(("results/tables/table2", "results/craft/tables")) for p in results
        )
        assert "Claims" not in categories
        assert "Not built when this report was made: Table 2 (<tt" in page

        proc = _report(tiny_run, tmp_path / "table1.zip", "table1")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Report of what exists" not in proc.stderr  # `all` is not in that DAG
        page = _unpack(tmp_path / "table1.zip", tmp_path / "table1").read_text()
        results, _ = _report_vars(page)
        assert sorted(results) == [
            "results/report/provenance/table1.html",
            "results/tables/table1.html",
            "results/tables/table1.provenance.json",
        ]
    finally:
        for src, dst in moved.items():
            if dst.exists():
                dst.rename(src)


# ----------------------------------------------------------------------------------------------
# The report in a real browser
# ----------------------------------------------------------------------------------------------

# Debian's chromium, headless, with nothing that reaches the network or a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser():
    """A headless Chromium driven by Playwright, or a skip that says what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "no chromium on PATH: the report's browser test needs Debian's chromium "
            "(apt-get install chromium; CI installs it with .ci/browser-setup)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -e '.[test]' installs it)",
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def _open(page, category: str, label: str, subcategory: str | None = None):
    """Click a category (and subcategory) in the report's menu, then the eye of the result
    whose row shows ``label``."""
    nav = page.locator("nav").first
    nav.locator("ol a").first.click()  # the breadcrumbs' home: the menu of categories
    nav.get_by_text(category, exact=True).click()
    if subcategory:
        nav.get_by_text(subcategory, exact=True).click()
    row = page.locator("tbody tr", has=page.get_by_text(label, exact=True)).first
    row.locator("a[iconname=eye]").click()


@pytest.mark.e2e
def test_report_in_a_headless_browser_shows_claims_figures_and_provenance(
    browser, tiny_report_html, tmp_path
):
    """Opens the self-contained report as a user does and checks what a user sees (screenshots
    in tmp_path)."""
    html = tiny_report_html
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(html.as_uri())
    assert page.get_by_text("This run.", exact=False).first.is_visible()
    front = page.locator("#app").inner_text()
    assert "over 2 seeds (0, 1" in front and "Not built" not in front
    page.wait_for_timeout(500)  # the menu fades in
    page.screenshot(path=tmp_path / "front.png")

    # The claims table: its counts line and every claim's row with a verdict, visible.
    _open(page, "Claims", "claims")
    claims = page.frame_locator("iframe")
    counts = claims.locator("p", has_text="claims:").first
    assert re.match(r"\d+ claims: \d+ supported, \d+ contradicted", counts.inner_text())
    table = claims.locator("table")
    assert table.is_visible() and table.locator("th", has_text="Verdict").is_visible()
    rows = table.locator("tbody tr")
    assert rows.count() >= 10 and rows.first.is_visible()
    assert rows.first.locator("td").last.inner_text() in {
        "supported",
        "contradicted",
        "equivalent",
        "undecided",
    }
    page.screenshot(path=tmp_path / "claims.png")

    # A figure: Figure 2, drawn (a decoded image of non-zero size).
    _open(page, "Figures", "fig2", subcategory="Main paper")
    img = page.locator("#app img[src^='data:image/png']").last
    assert img.is_visible()
    assert img.evaluate("i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100")
    page.screenshot(path=tmp_path / "figure.png")

    # A cell's provenance: Table 1's page, one cell with each seed's metrics file and sha256.
    page.locator("nav").first.locator("ol a").first.click()
    page.locator("nav").first.get_by_text("Provenance", exact=True).click()
    row = page.locator("tbody tr", has=page.get_by_text("page", exact=True))
    row.filter(has=page.get_by_text("table1", exact=True)).locator("a[iconname=eye]").click()
    prov = page.frame_locator("iframe")
    cell = prov.locator("h2.cell").first
    assert cell.is_visible() and re.search(
        r" \| .*: \d+\.\d\d ± \d+\.\d\d, n = 2", cell.inner_text()
    )
    seeds = prov.locator("table.seeds").first.locator("tbody tr")
    assert seeds.count() == 2 and seeds.first.is_visible()
    metrics = seeds.first.locator("td").nth(2).inner_text()
    assert re.fullmatch(r"results/finetune/imagenet100/\S+/seed0/metrics\.json", metrics), metrics
    assert prov.get_by_text("robustkd audit results/tables/table1.csv --cell").first.is_visible()
    page.screenshot(path=tmp_path / "provenance.png")
