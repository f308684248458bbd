"""The claims table: verdicts from paired seeds, on small hand-made metrics files."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from robustkd.audit import audit
from robustkd.config import load_config
from robustkd.provenance import write_provenance
from robustkd.report.claims import (
    Claim,
    Term,
    build_claims_table,
    claim_inputs,
    paper_claims,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, data: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def _pair_claim(tmp: Path, key: str, ours: list[float], base: list[float]) -> Claim:
    seeds = tuple(range(len(ours)))
    a = tuple(
        _write(tmp / key / "ours" / f"seed{s}.json", {"top1": v})
        for s, v in zip(seeds, ours, strict=True)
    )
    b = tuple(
        _write(tmp / key / "base" / f"seed{s}.json", {"top1": v})
        for s, v in zip(seeds, base, strict=True)
    )
    return Claim(key, "Table 1", f"claim {key}", seeds, (Term("Ours", 1, a), Term("Base", -1, b)))


@pytest.mark.parametrize(
    ("ours", "base", "expected"),
    [
        ([60.0, 62.0, 61.0], [50.0, 51.0, 49.5], "supported"),
        ([40.0, 41.0, 39.0], [50.0, 51.5, 49.0], "contradicted"),
        ([50.0, 58.0, 45.0], [52.0, 50.0, 49.0], "undecided"),
        ([55.0, 56.0, 57.0], [50.0, 51.0, 52.0], "undecided"),  # same gain each seed: no test
        ([70.0], [50.0], "undecided"),  # one seed
        ([50.1, 49.9, 50.0, 50.2], [50.0, 50.0, 50.0, 50.0], "equivalent"),  # within 2 points
    ],
)
def test_each_verdict_is_reachable(tmp_path, ours, base, expected):
    claim = _pair_claim(tmp_path, "c", ours, base)
    rows = build_claims_table([claim], tmp_path / "claims")
    assert rows[0]["verdict"] == expected
    diffs = [a - b for a, b in zip(ours, base, strict=True)]
    assert rows[0]["mean"] == pytest.approx(sum(diffs) / len(diffs))
    if expected != "undecided":
        # The interval and p are scipy's paired t-test.
        t = stats.ttest_rel(ours, base)
        assert rows[0]["p"] == pytest.approx(t.pvalue)
        lo, hi = t.confidence_interval(0.95)
        assert (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx((lo, hi))


def test_the_table_states_the_rule_and_reports_adjusted_p_and_mde(tmp_path):
    claims = [
        _pair_claim(tmp_path, "a", [60.0, 62.0, 61.0], [50.0, 51.0, 49.5]),
        _pair_claim(tmp_path, "b", [50.0, 58.0, 45.0], [52.0, 50.0, 49.0]),
    ]
    rows = build_claims_table(
        claims, tmp_path / "claims", decision={"alpha": 0.05, "power": 0.8, "equivalence_margin": 1}
    )
    df = pd.read_csv(tmp_path / "claims.csv")
    assert {"p", "p_adj", "p_equiv", "p_equiv_adj", "mde", "verdict"} <= set(df.columns)
    # Holm over 4 tests: the smallest p (claim a's difference) is multiplied by 4.
    assert rows[0]["p_adj"] == pytest.approx(4 * rows[0]["p"])
    assert all(r["p_adj"] >= r["p"] for r in rows)
    md = (tmp_path / "claims.md").read_text()
    assert "1 supported, 0 contradicted, 0 equivalent (no difference of 1 points or more), " in md
    assert "family-wise error 0.05, Holm" in md


def test_gap_claim_combines_four_terms_per_seed(tmp_path):
    """Fig 3: (ours - supervised) at the lowest fraction minus the same at 100 %."""
    vals = {"ol": [40, 42, 41], "sl": [20, 25, 21], "oh": [80, 81, 79], "sh": [78, 80, 77]}
    files = {
        k: tuple(_write(tmp_path / k / f"s{s}.json", {"top1": x}) for s, x in enumerate(v))
        for k, v in vals.items()
    }
    claim = Claim(
        "gap",
        "Fig 3",
        "gap",
        (0, 1, 2),
        (
            Term("ol", 1, files["ol"]),
            Term("sl", -1, files["sl"]),
            Term("oh", -1, files["oh"]),
            Term("sh", 1, files["sh"]),
        ),
    )
    (row,) = build_claims_table([claim], tmp_path / "claims")
    per_seed = [vals["ol"][s] - vals["sl"][s] - vals["oh"][s] + vals["sh"][s] for s in range(3)]
    assert json.loads(row["values"]) == per_seed
    assert row["verdict"] == "supported"


def test_ladder_terms_read_their_seed_and_the_audit_walks_them(tmp_path, monkeypatch):
    """Fig 2 claims read one seed's result from a ladder file; the audit checks every value."""
    monkeypatch.chdir(tmp_path)
    results = []
    for method, base in (("ours", 30.0), ("supervised", 20.0)):
        res = [
            {"seed": s, "distortion": d, "top1": base + s + (5 if d == "mask-0.95" else 0)}
            for s in range(3)
            for d in ("mask-0.90", "mask-0.95")
        ]
        results.append(_write(Path(f"results/eval/{method}/ladder.json"), {"results": res}))
        write_provenance(
            Path(f"results/eval/{method}/provenance.json"),
            rule="evaluate_ladder",
            outputs=[results[-1]],
        )
    claim = Claim(
        "fig2/x",
        "Fig 2",
        "ladder",
        (0, 1, 2),
        (
            Term("Ours", 1, (results[0],) * 3, "ladder:mask-0.95"),
            Term("Sup", -1, (results[1],) * 3, "ladder:mask-0.95"),
        ),
    )
    Path("results/tables").mkdir(parents=True)
    (row,) = build_claims_table([claim], "results/tables/claims")
    assert json.loads(row["values"]) == [10.0, 10.0, 10.0]
    prov = json.loads(Path("results/tables/claims.provenance.json").read_text())
    keys = [s["metric"] for c in prov["table"]["cells"] for s in c["seeds"]]
    assert keys == ["results.1.top1", "results.3.top1", "results.5.top1"] * 2
    assert audit("results/tables/claims.csv", root=tmp_path, echo=lambda *_: None).ok
    # A changed value in a ladder file fails the audit.
    data = json.loads(Path(results[0]).read_text())
    data["results"][3]["top1"] = 99.0
    Path(results[0]).write_text(json.dumps(data))
    failed = audit("results/tables/claims.csv", root=tmp_path, echo=lambda *_: None)
    assert {p.kind for p in failed.problems} >= {"changed"}


def test_missing_metrics_file_is_named(tmp_path):
    claim = _pair_claim(tmp_path, "c", [1.0, 2.0], [0.0, 0.0])
    Path(claim.terms[1].files[1]).unlink()
    with pytest.raises(FileNotFoundError, match="seed1.json"):
        build_claims_table([claim], tmp_path / "claims")


def test_demo_claims_cover_every_comparison_the_paper_makes():
    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")
    claims = paper_claims(cfg)
    by_source = pd.Series([c.source for c in claims]).value_counts().to_dict()
    exp = cfg["experiments"]
    n_t1 = len(exp["table1"]["distortions"])
    assert by_source["Table 1"] == 2 * n_t1  # vs supervised and vs CI, every row
    assert by_source["Table 3"] == 3 * len(exp["table3"]["distortions"])
    assert by_source["Fig 3"] == 2 * len(exp["fig3"]["distortions"])
    assert by_source["Fig 2"] == sum(len(lad["test"]) for lad in exp["fig2"]["ladders"])
    # Fig 2's statements name each setting by its label, as the tables do, not by its config key.
    said = {c.key: c.statement for c in claims}
    assert said["fig2/mask-0.90/mask-0.92/ours-supervised"] == (
        "Trained at Random Mask p=0.9, ours beats the supervised baseline tested at the stronger "
        "Random Mask p=0.92"
    )
    assert said["fig2/blur-9-1.3/blur-11-1.6/ours-supervised"].endswith(
        "the stronger Gaussian Blur (11, 1.6) [for Gaussian Blur (45, 11.0)]"
    )
    t2 = exp["table2"]
    assert by_source["Table 2"] == 2 * len(t2["distortions"]) * len(t2["datasets"])
    assert len({c.key for c in claims}) == len(claims)
    low = min(exp["fig3"]["fractions"])
    assert any(f"frac{low:g}/seed0/" in f for f in claim_inputs(claims))
    for c in claims:
        assert math.isclose(sum(t.coef for t in c.terms), 0.0)  # differences, never levels


def test_the_study_tests_its_four_sources_with_twenty_seeds_and_the_demo_says_it_is_preliminary(
    tmp_path,
):
    demo = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")
    cfg = ROOT / "config"
    study = load_config(cfg / "config.yaml", cfg / "demo.yaml", cfg / "study.yaml")
    everything, decisive = paper_claims(demo), paper_claims(study)
    assert {c.source for c in decisive} == {"Table 1", "Table 3", "Fig 3", "Fig 2"}
    # The same claims as the demo's but Table 2's; Fig 3's name the study's own lowest fraction.
    same = [c.key for c in everything if c.source not in ("Table 2", "Fig 3")]
    assert [c.key for c in decisive if c.source != "Fig 3"] == same
    fig3 = [
        c.key.replace("gap0.1-", "gap0.04-").replace("/frac0.1/", "/frac0.04/")
        for c in everything
        if c.source == "Fig 3"
    ]
    assert [c.key for c in decisive if c.source == "Fig 3"] == fig3
    assert all(c.seeds == tuple(range(20)) for c in decisive)
    # The study reads ImageNet-100 runs only, and of Fig 3 the lowest and highest fractions.
    inputs = claim_inputs(decisive)
    assert all("/imagenet100/" in f for f in inputs)
    assert {f.split("/frac")[1].split("/")[0] for f in inputs if "/frac" in f} == {"0.04", "1"}
    claim = _pair_claim(tmp_path, "a", [60.0, 62.0, 61.0], [50.0, 51.0, 49.5])
    build_claims_table([claim], tmp_path / "demo", decision=demo["claims"])
    build_claims_table([claim], tmp_path / "study", decision=study["claims"])
    banner = "*Preliminary verdicts: this run has too few seeds to decide most claims."
    assert banner in (tmp_path / "demo.md").read_text()
    assert (
        "`make study`, written to `study/results/tables/claims.md`"
        in (tmp_path / "demo.md").read_text()
    )
    assert "Preliminary" not in (tmp_path / "study.md").read_text()


@pytest.mark.e2e
def test_claims_target_of_the_tiny_run_is_audited(tiny_run):
    df = pd.read_csv(tiny_run / "results/tables/claims.csv")
    cfg = load_config(
        tiny_run / "config/config.yaml",
        tiny_run / "config/demo.yaml",
        tiny_run / "config/tiny.yaml",
    )
    assert list(df["claim"]) == [c.key for c in paper_claims(cfg)]
    assert set(df["verdict"]) <= {"supported", "contradicted", "equivalent", "undecided"}
    assert (df["n"] == len(cfg["seeds"])).all()
    md = (tiny_run / "results/tables/claims.md").read_text()
    assert f"{len(df)} claims:" in md
    result = audit("claims", root=tiny_run, echo=lambda *_: None)
    assert result.ok, result.problems
