"""Table 4 (issue 17): one student for every distortion, from hand-made metrics and ladder files.

The files follow the pipeline's layout (robustkd.layout) and carry provenance records
(student -> fine-tuned model -> evaluation file), so the audit walks Table 4 as it walks
Tables 1-3, and fails when a mixed student is tampered with.
"""

import json
import sys
from pathlib import Path

import pytest

from robustkd.audit import audit
from robustkd.config import load_config
from robustkd.layout import (
    distill_weights,
    evaluation_tests,
    finetune_files,
    ladder_file,
    table_cells,
    table_spec,
)
from robustkd.provenance import write_provenance
from robustkd.report.tables import build_table
from tests import bounded
from tests.test_audit import flipped

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    """The miniature's config on the tiny overlay: 2 seeds, rows mask-0.90, blur-9-1.3, clean."""
    return load_config(
        ROOT / "config/config.yaml", ROOT / "config/demo.yaml", ROOT / "config/tiny.yaml"
    )


def _write(path, data: bytes) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return str(path)


def _model(method, distortion, seed, top1=None):
    """A student (for pretrained methods), its fine-tuned model and metrics, with records."""
    init = None
    if method != "supervised":
        init = _write(
            distill_weights(method, distortion, seed), f"{method}{distortion}{seed}".encode() * 30
        )
        write_provenance(
            Path(init).parent / "provenance.json",
            rule="distill",
            outputs=[init],
            seed=seed,
            wildcards={"distill_method": method, "distortion": distortion},
        )
    files = finetune_files("imagenet100", method, distortion, "1", seed)
    model = _write(files["model"], f"clf{method}{distortion}{seed}".encode() * 30)
    metrics = _write(files["metrics"], json.dumps({"top1": top1 or 0.0, "seed": seed}).encode())
    write_provenance(
        Path(model).parent / "provenance.json",
        rule="finetune",
        inputs=[init] if init else [],
        outputs=[model, metrics],
        seed=seed,
        wildcards={"method": method, "distortion": distortion},
    )
    return model


# top1 of the mixed models: method -> test -> per-seed values (seeds 0, 1).
MIXED = {
    "ours": {"mixed": [50, 52], "mask-0.90": [40, 44], "blur-9-1.3": [60, 61], "clean": [70, 72]},
    "supervised": {
        "mixed": [45, 45],
        "mask-0.90": [30, 33],
        "blur-9-1.3": [58, 60],
        "clean": [66, 70],
    },
    "ci": {"mixed": [40, 41], "mask-0.90": [35, 35], "blur-9-1.3": [50, 52], "clean": [60, 60]},
}
SPECIALIST = {"mask-0.90": [46, 47], "blur-9-1.3": [59, 63]}


@pytest.fixture
def table4(cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seeds = cfg["seeds"]
    for d, values in SPECIALIST.items():
        for s, v in zip(seeds, values, strict=True):
            _model("ours", d, s, float(v))
    train = cfg["experiments"]["table4"]["train"]
    for method, by_test in MIXED.items():
        models = [_model(method, train, s) for s in seeds]
        results = [
            {"seed": s, "distortion": t, "top1": float(by_test[t][i])}
            for i, s in enumerate(seeds)
            for t in evaluation_tests(cfg, train)
        ]
        out = _write(ladder_file(method, train), json.dumps({"results": results}).encode())
        write_provenance(
            Path(out).parent / "provenance.json",
            rule="evaluate_ladder",
            inputs=models,
            outputs=[out],
            wildcards={"method": method, "distortion": train},
        )
    df = build_table(
        table_spec(cfg, "table4"),
        table_cells(cfg, "table4"),
        "results/tables/table4",
        provenance={"rule": "make_table", "wildcards": {"table": "table4"}},
    )
    return df


def test_table4_cells_comparisons_and_provenance(cfg, table4):
    assert evaluation_tests(cfg, "mixed") == ["mixed", "mask-0.90", "blur-9-1.3", "clean"]
    cells = {(r.row, r.column): (r.mean, r.n) for r in table4.itertuples()}
    assert cells[("mask-0.90", "specialist")] == (46.5, 2)
    assert cells[("clean", "ours")] == (71.0, 2)
    assert cells[("blur-9-1.3", "ci")] == (51.0, 2)
    assert ("clean", "specialist") not in cells  # no clean specialist: a dash
    md = Path("results/tables/table4.md").read_text()
    clean_line = next(ln for ln in md.splitlines() if ln.startswith("| Clean"))
    assert clean_line.split("|")[2].strip() == "—"
    prov = json.loads(Path("results/tables/table4.provenance.json").read_text())
    comps = {(c["row"], c["column"]): c["result"] for c in prov["table"]["comparisons"]}
    # ours (mixed) vs the specialist and vs supervised (mixed), per row; never vs CI.
    assert {c for _, c in comps} == {
        "vs Specialist (Ours, trained on the row's distortion)",
        "vs Supervised Baseline (mixed)",
    }
    mask = next(lbl for key, lbl in table_spec(cfg, "table4").rows if key == "mask-0.90")
    assert comps[(mask, "vs Supervised Baseline (mixed)")]["mean_diff"] == pytest.approx(10.5)
    assert comps[(mask, "vs Specialist (Ours, trained on the row's distortion)")][
        "mean_diff"
    ] == pytest.approx(-4.5)
    assert (
        comps[("Clean (no distortion)", "vs Specialist (Ours, trained on the row's distortion)")]
        is None
    )
    # A mixed cell's seeds name the ladder result each value was read from.
    cell = next(c for c in prov["table"]["cells"] if c["row"] == "clean" and c["column"] == "ours")
    data = json.loads(Path(ladder_file("ours", "mixed")).read_text())
    for s in cell["seeds"]:
        i = int(s["metric"].split(".")[1])
        assert (
            data["results"][i]["seed"] == s["seed"] and data["results"][i]["distortion"] == "clean"
        )


def test_audit_walks_table4_and_fails_on_a_tampered_mixed_student(table4):
    lines = []
    result = audit("table4", echo=lines.append)
    out = "\n".join(lines + result.summary)
    assert result.ok, out
    assert "<- distill  results/distill/ours/mixed/seed1/provenance.json" in out
    victim = Path(distill_weights("ours", "mixed", 1))
    with flipped(victim):
        lines = []
        result = audit("table4", echo=lines.append)
    assert not result.ok
    assert [p.path for p in result.problems][0] == str(victim)


def test_dry_run_of_table4_plans_the_mixed_students_and_their_evaluations(tmp_path):
    """`snakemake -n table4` on the tiny overlay, from an empty working directory."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)]
    cmd += ["table4", "-n", "--quiet", "rules", "--configfile"]
    cmd += [str(ROOT / "config/demo.yaml"), str(ROOT / "config/tiny.yaml")]
    proc = bounded.run(cmd, what="snakemake -n table4", timeout=bounded.QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # 2 specialists (ours on each row's distortion) + ours on mixed; CI on mixed; their
    # fine-tunings and supervised on mixed; one evaluation per mixed method; the table.
    assert {k: counts.get(k) for k in ("distill", "distill_ci", "finetune", "evaluate_ladder")} == {
        "distill": 3,
        "distill_ci": 1,
        "finetune": 5,
        "evaluate_ladder": 3,
    }, proc.stdout
    assert counts.get("make_table") == 1 and counts.get("transfer") is None
