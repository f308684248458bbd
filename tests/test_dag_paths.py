"""One writer per file: no two jobs of any target write the same output, log or record.

- The jobs of every named target at once (``all``, ``beyond``, each table and figure, CRAFT,
  the corruptions) of the paper config, the demo and the tiny overlay: no path written by two
  jobs, none inside another job's output folder (:func:`robustkd.dagpaths.collisions`).
- On the real tiny run, after ``all`` and then ``beyond``: every record on disk is a declared
  output of exactly one job (or lies in one job's output folder), every job has one, and every
  table, the claims, Table 4 and the corruption table audit.
- Records of the old layout (``evaluate_ladder`` and ``evaluate_corruptions`` shared the
  folder's ``provenance.json``) still audit; an overwritten one is named as such.
"""

import json
import os
import re
from pathlib import Path

import pytest

from robustkd.audit import audit
from robustkd.dagpaths import Collision, DagJob, collisions, dry_run, parse_jobs
from robustkd.provenance import write_provenance
from robustkd.report.tables import Cell, TableSpec, build_table
from tests import bounded
from tests.test_workflow import CONFIGS, SNAKEMAKE

ROOT = Path(__file__).resolve().parents[1]
CONFIG_SETS = {
    "paper": [],
    "demo": ["config/demo.yaml"],
    "tiny": ["config/demo.yaml", "config/tiny.yaml"],
    "study": ["config/demo.yaml", "config/study.yaml"],
}


def aggregate_targets() -> list[str]:
    """Every rule of the workflow with inputs and no outputs: the named targets users type."""
    found = []
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        text = path.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
            if "output:" not in m.group(2) and "input:" in m.group(2):
                found.append(m.group(1))
    return found


# ----------------------------------------------------------------------------------------------
# Units: the dry-run listing and the collision check
# ----------------------------------------------------------------------------------------------

LISTING = """\
Building DAG of jobs...
[Sun Dec  6 21:47:32 2026]
rule evaluate_ladder:
    input: results/data/imagenet100, results/finetune/x/seed0/model.pth
    output: results/eval/ours/mask/ladder.json, results/eval/ours/mask/ladder.provenance.json
    log: logs/evaluate_ladder/ours/mask.log
    jobid: 12
    benchmark: logs/evaluate_ladder/ours/mask.benchmark.tsv
    reason: Missing output files: results/eval/ours/mask/ladder.json
    wildcards: method=ours, distortion=mask
    resources: tmpdir=/tmp, runtime=240
[Sun Dec  6 21:47:32 2026]
localrule all:
    input: results/eval/ours/mask/ladder.json
    jobid: 0
"""


def test_dry_run_listing_gives_each_job_its_outputs_logs_and_benchmarks():
    ladder, top = parse_jobs(LISTING)
    assert ladder == DagJob(
        "evaluate_ladder",
        {"method": "ours", "distortion": "mask"},
        ("results/eval/ours/mask/ladder.json", "results/eval/ours/mask/ladder.provenance.json"),
        ("logs/evaluate_ladder/ours/mask.log",),
        ("logs/evaluate_ladder/ours/mask.benchmark.tsv",),
    )
    assert ladder.records == ("results/eval/ours/mask/ladder.provenance.json",)
    assert top == DagJob("all") and top.written == ()


def _job(rule, outputs, logs=(), **wildcards):
    return DagJob(rule, dict(wildcards), tuple(outputs), tuple(logs))


def test_a_shared_record_names_both_rules():
    ladder = _job("evaluate_ladder", ["e/ladder.json", "e/provenance.json"], method="ours")
    scores = _job("evaluate_corruptions", ["e/corruptions.json", "e/provenance.json"])
    found = collisions([ladder, scores])
    assert found == [Collision("e/provenance.json", ladder, scores)]
    assert str(found[0]) == (
        "e/provenance.json: rule evaluate_corruptions also writes rule evaluate_ladder "
        "[method=ours]"
    )


def test_outputs_inside_another_jobs_folder_and_shared_logs_collide():
    prepare = _job("prepare_toy", ["results/data/toy"])
    intruder = _job("fix_manifest", ["results/data/toy/manifest.csv"], logs=["logs/a.log"])
    other = _job("other", ["results/other.json"], logs=["logs/a.log"])
    found = collisions([prepare, intruder, other])
    assert Collision("results/data/toy/manifest.csv", prepare, intruder, inside=True) in found
    assert Collision("logs/a.log", intruder, other) in found
    assert len(found) == 2
    assert "writes inside the output folder of rule prepare_toy" in str(found[0]) + str(found[1])


def test_one_job_listed_twice_and_its_own_nested_outputs_are_no_collision():
    run = _job("distill", ["r/seed0", "r/seed0/student.pth"], seed="0")
    assert collisions([run, run, _job("distill", ["r/seed1/student.pth"], seed="1")]) == []


# ----------------------------------------------------------------------------------------------
# The real DAGs: every named target of each config at once
# ----------------------------------------------------------------------------------------------


def test_the_named_targets_are_found():
    targets = aggregate_targets()
    assert {"all", "beyond", "craft", "corruptions", "table1", "table4", "fig2", "fig4"} <= set(
        targets
    ), targets


@pytest.mark.parametrize("name", sorted(CONFIG_SETS))
def test_no_two_jobs_of_any_target_write_one_path(name):
    jobs = dry_run(aggregate_targets(), [ROOT / c for c in CONFIG_SETS[name]], workdir=ROOT)
    assert len({j.rule for j in jobs}) > 10, "the dry run listed too few jobs"
    found = collisions(jobs)
    assert not found, "\n".join(map(str, found))
    # Every job that writes files declares its provenance record, or writes one folder (the
    # record inside it): a record Snakemake does not know of is a record another job can
    # overwrite without either job noticing.
    undeclared = [
        str(j)
        for j in jobs
        if j.outputs
        and not j.records
        and not (len(j.outputs) == 1 and "." not in Path(j.outputs[0]).name)
    ]
    assert not undeclared, "jobs without a declared record:\n" + "\n".join(undeclared)


# ----------------------------------------------------------------------------------------------
# The sequence users run: `all`, then `beyond`, then the audit of every table
# ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_all_then_beyond_keeps_every_record_and_every_table_audits(tiny_run):
    proc = bounded.run(
        [*SNAKEMAKE, "beyond", "--cores", "2", *CONFIGS],
        what="snakemake beyond on the tiny run",
        timeout=bounded.DAG,
        cwd=tiny_run,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Every record on disk belongs to exactly one job of the two targets.
    jobs = dry_run(["all", "beyond"], CONFIGS[1:], workdir=tiny_run)
    declared = {os.path.normpath(p): j for j in jobs for p in j.outputs}
    on_disk = sorted(
        str(p.relative_to(tiny_run)) for p in (tiny_run / "results").rglob("*provenance.json")
    )
    orphans = []
    for record in on_disk:
        folders = [str(p) for p in Path(record).parents]
        if record not in declared and not any(f in declared for f in folders):
            orphans.append(record)
    assert not orphans, f"records no job declares: {orphans}"
    for job in jobs:
        if job.outputs and not job.records:  # one output folder, its record inside
            (folder,) = job.outputs
            assert (tiny_run / folder / "provenance.json").is_file(), job

    for target in ("table1", "table2", "table3", "table4", "claims", "corruptions", "craft_table"):
        lines: list[str] = []
        result = audit(target, root=tiny_run, echo=lines.append)
        assert result.ok, (target, result.summary, [str(p) for p in result.problems][:5])
    again = bounded.run(
        [*SNAKEMAKE, "all", "beyond", "--dry-run", "--cores", "1", *CONFIGS],
        what="snakemake all beyond --dry-run",
        timeout=bounded.QUICK,
        cwd=tiny_run,
    )
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


# ----------------------------------------------------------------------------------------------
# Records of the old layout: one provenance.json per evaluation folder
# ----------------------------------------------------------------------------------------------


def _evaluation_folder(record_of: dict[str, str]) -> Path:
    """A Fig 2 style chain: a table reading ``ladder.json``; records as ``record_of`` says.

    ``record_of`` maps ``ladder`` and ``corruptions`` to the record path each job wrote (the
    later one wins when both name the same file, as in a run of the old layout).
    """
    folder = Path("results/eval/toy/ours/mask")
    folder.mkdir(parents=True)
    for name, rule, value in (
        ("ladder", "evaluate_ladder", 61.0),
        ("corruptions", "evaluate_corruptions", 40.0),
    ):
        out = folder / f"{name}.json"
        out.write_text(json.dumps({"top1": value}))
        write_provenance(
            folder / record_of[name],
            rule=rule,
            outputs=[out],
            wildcards={"method": "ours", "distortion": "mask"},
        )
    spec = TableSpec("toyfig", "Toy", rows=[("mask", "Mask")], columns=[("ours", "Ours")])
    build_table(
        spec,
        [Cell("mask", "ours", (str(folder / "ladder.json"),))],
        "results/tables/toyfig",
        provenance={"rule": "make_figure", "wildcards": {}},
    )
    return folder


@pytest.mark.parametrize(
    "record_of",
    [
        {"ladder": "ladder.provenance.json", "corruptions": "corruptions.provenance.json"},
        {"ladder": "provenance.json", "corruptions": "corruptions.provenance.json"},
    ],
    ids=["one record per job", "old layout, not overwritten"],
)
def test_records_of_both_layouts_audit(tmp_path, monkeypatch, record_of):
    monkeypatch.chdir(tmp_path)
    _evaluation_folder(record_of)
    result = audit("toyfig", echo=lambda *_: None)
    assert result.ok, [str(p) for p in result.problems]


def test_an_overwritten_record_is_named_with_the_rule_that_wrote_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _evaluation_folder({"ladder": "provenance.json", "corruptions": "provenance.json"})
    result = audit("toyfig", echo=lambda *_: None)
    assert not result.ok
    ladder = str(folder / "ladder.json")
    (problem,) = [p for p in result.problems if p.path == ladder]
    assert problem.kind == "overwritten"
    assert problem.detail.startswith(
        f"{folder / 'provenance.json'} was written by rule evaluate_corruptions "
        "[distortion=mask, method=ours], which did not produce ladder.json"
    )
    assert f"snakemake --force {ladder}" in problem.detail


def test_the_study_target_builds_its_four_experiments_and_nothing_else():
    jobs = dry_run(["study"], [ROOT / c for c in CONFIG_SETS["study"]], workdir=ROOT)
    rules = {j.rule for j in jobs}
    assert {"distill", "distill_ci", "finetune", "finetune_fractions", "evaluate_ladder"} <= rules
    assert {"claims", "make_table"} <= rules
    # No transfer (Table 2), no Fig 4, no CRAFT study, no other dataset.
    assert not {r for r in rules if r.startswith(("transfer", "craft", "attention", "make_fig"))}
    assert {j.wildcards.get("dataset") for j in jobs} <= {None, "imagenet100"}
    # Fig 3's claims read the lowest and highest fractions: the fraction jobs train 4 %.
    fractions = [j for j in jobs if j.rule == "finetune_fractions"]
    assert fractions and all("frac0.04/seed9/" in " ".join(j.outputs) for j in fractions)
    assert not any("frac0.1/" in " ".join(j.outputs) for j in fractions)
    assert not collisions(jobs)
