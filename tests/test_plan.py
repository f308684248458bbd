"""`robustkd plan`: the images and GPU-hours of each job, checked by hand on a tiny config."""

import pytest

from robustkd.plan import (
    DEFAULT_THROUGHPUT,
    PlanError,
    format_plan,
    makespan,
    parse_dry_run,
    parse_throughput,
    plan_jobs,
)

CONFIG = {
    "seeds": [0, 1],
    "evaluation": {"repeats": 3},
    "data": {"datasets": {"imagenet100": {}, "cifar10": {}}},
    "training": {
        "distill": {"epochs": 4},
        "contrastive_inversion": {"epochs": 2},
        "finetune": {"epochs": 5},
    },
    "experiments": {
        "fig2": {"ladders": [{"train": "mask-0.90", "test": ["mask-0.95", "mask-0.99"]}]},
        "fig3": {"fractions": [0.1, 0.5, 1.0]},
        "table2": {"datasets": ["cifar10"]},
    },
    "craft": {"teacher": {"train": {"epochs": 7}}, "student": {"train": {"epochs": 3}}},
}
SIZES = {"imagenet100": (1000, 200), "cifar10": (500, 100)}

DRY_RUN = """
rule distill:
    input: results/data/imagenet100
    wildcards: distill_method=ours, distortion=mask-0.90
    resources: tmpdir=/tmp
[Mon Nov 30 21:30:40 2026]
localrule make_table:
    wildcards: table=table1
rule finetune_fractions:
    wildcards: method=supervised, distortion=mask-0.90
rule transfer:
    wildcards: method=ours, distortion=mask-0.90
rule evaluate_ladder:
    wildcards: method=ours, distortion=mask-0.90
rule craft_teacher:
rule craft_student:
    wildcards: method=crd
rule distill_ci:
    wildcards: distortion=noise-0.5
"""


def test_dry_run_listing_is_parsed_into_rules_and_wildcards():
    jobs = parse_dry_run(DRY_RUN)
    assert [r for r, _ in jobs] == [
        "distill",
        "make_table",
        "finetune_fractions",
        "transfer",
        "evaluate_ladder",
        "craft_teacher",
        "craft_student",
        "distill_ci",
    ]
    assert jobs[0][1] == {"distill_method": "ours", "distortion": "mask-0.90"}
    assert jobs[5][1] == {}


def test_images_of_each_job_by_hand():
    planned = {j.rule: j for j in plan_jobs(parse_dry_run(DRY_RUN), CONFIG, SIZES)}
    assert "make_table" not in planned  # no GPU work
    # 2 seeds x 4 epochs x 1000 images
    assert planned["distill"].train_images == 8000
    assert planned["distill_ci"].train_images == 2 * 2 * 1000
    # fractions below 1 (0.1, 0.5) x 2 seeds: 5 epochs x (100 + 500) x 2; eval 3 x 200 x 4 runs
    assert planned["finetune_fractions"].train_images == 5 * (100 + 500) * 2
    assert planned["finetune_fractions"].eval_images == 3 * 200 * 4
    # Table 2: cifar10, all labels, 2 seeds
    assert planned["transfer"].train_images == 5 * 500 * 2
    assert planned["transfer"].eval_images == 3 * 100 * 2
    # Fig 2: the training distortion and 2 stronger ones, 3 repeats, 2 seeds, 200 val images
    assert planned["evaluate_ladder"].eval_images == 2 * 3 * 3 * 200
    assert planned["craft_teacher"].train_images == 7 * 500  # one teacher
    assert planned["craft_student"].train_images == 2 * 3 * 500


# The same jobs, one per seed (jobs.seeds_per_job: one): Snakemake gives each a {seed} wildcard.
DRY_RUN_PER_SEED = """
rule distill:
    wildcards: distill_method=ours, distortion=mask-0.90, seed=1
rule finetune_fractions:
    wildcards: method=supervised, distortion=mask-0.90, seed=0
rule transfer:
    wildcards: method=ours, distortion=mask-0.90, seed=1
rule craft_student:
    wildcards: craft_method=crd, seed=0
rule evaluate_ladder:
    wildcards: method=ours, distortion=mask-0.90
"""


def test_a_job_per_seed_counts_its_seed_only():
    planned = {j.rule: j for j in plan_jobs(parse_dry_run(DRY_RUN_PER_SEED), CONFIG, SIZES)}
    assert planned["distill"].train_images == 4 * 1000  # 1 seed x 4 epochs x 1000 images
    assert planned["distill"].runs == ["imagenet100 x4 ep seed 1"]
    # fractions 0.1 and 0.5 of seed 0: 5 epochs x (100 + 500); eval 3 x 200 x 2 runs
    assert planned["finetune_fractions"].train_images == 5 * (100 + 500)
    assert planned["finetune_fractions"].eval_images == 3 * 200 * 2
    assert planned["transfer"].train_images == 5 * 500
    assert planned["craft_student"].train_images == 3 * 500
    # a ladder job still evaluates every seed's classifier
    assert planned["evaluate_ladder"].eval_images == 2 * 3 * 3 * 200
    # per seed, the seeds' jobs add up to the one job of every seed
    whole = {j.rule: j for j in plan_jobs(parse_dry_run(DRY_RUN), CONFIG, SIZES)}
    for rule in ("distill", "finetune_fractions", "transfer", "craft_student"):
        assert 2 * planned[rule].train_images == whole[rule].train_images, rule


def test_gpu_hours_totals_and_wall_time():
    planned = plan_jobs(parse_dry_run(DRY_RUN), CONFIG, SIZES)
    rates = parse_throughput(["distill=8000", "evaluate=3600"])
    distill = next(j for j in planned if j.rule == "distill")
    assert distill.gpu_hours(rates) == pytest.approx(8000 / 8000 / 3600)
    ladder = next(j for j in planned if j.rule == "evaluate_ladder")
    assert ladder.gpu_hours(rates) == pytest.approx(3600 / 3600 / 3600)
    lines = format_plan(planned, rates, gpus=2)
    total = sum(j.gpu_hours(rates) for j in planned)
    assert f"{len(planned)} jobs, {total:.1f} GPU-h" in lines[-1]
    assert makespan([3.0, 2.0, 2.0, 1.0], 2) == 4.0  # {3, 1} and {2, 2}
    assert makespan([5.0, 1.0], 4) == 5.0  # the longest job bounds the wall time
    with pytest.raises(PlanError, match="at least 1"):
        makespan([1.0], 0)


def test_bad_throughputs_and_unknown_sizes_are_named():
    with pytest.raises(PlanError, match="unknown rule kind"):
        parse_throughput(["distil=100"])
    with pytest.raises(PlanError, match="positive"):
        parse_throughput(["distill=-3"])
    assert parse_throughput([])["distill"] == DEFAULT_THROUGHPUT["distill"]
    with pytest.raises(PlanError, match="'imagenet100' unknown: prepare it first"):
        plan_jobs(parse_dry_run(DRY_RUN), CONFIG, {"cifar10": (1, 1)})


@pytest.mark.e2e
def test_plan_of_the_tiny_dag_matches_the_jobs_that_ran(tiny_run, capsys):
    """The plan's jobs per rule are those the session's tiny DAG run executed (its Snakemake
    log), and a distill job's images follow from the prepared ImageNet-100's manifest."""
    import csv
    from collections import Counter

    from robustkd.cli import main
    from robustkd.config import load_config
    from robustkd.plan import dry_run_jobs, set_sizes

    configs = ["config/demo.yaml", "config/tiny.yaml"]
    config = load_config(tiny_run / "config/config.yaml", *(tiny_run / c for c in configs))
    jobs = dry_run_jobs(["all"], configs, workdir=tiny_run)
    planned = plan_jobs(jobs, config, set_sizes(config, tiny_run))
    first_run = sorted((tiny_run / ".snakemake" / "log").glob("*.snakemake.log"))[0]
    kinds = {j.rule for j in planned}
    ran = Counter(rule for rule, _ in parse_dry_run(first_run.read_text()) if rule in kinds)
    assert Counter(j.rule for j in planned) == ran
    assert {"distill", "finetune", "craft_student", "pretrain_backbone"} <= kinds

    with open(tiny_run / "results/data/imagenet100/manifest.csv") as f:
        n_train = sum(row["split"] == "train" for row in csv.DictReader(f))
    per_job = len(config["seeds"]) * config["training"]["distill"]["epochs"] * n_train
    assert {j.train_images for j in planned if j.rule == "distill"} == {per_job}

    code = main(["plan", "all", "--configfile", *configs, "--root", str(tiny_run), "--gpus", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1].startswith(f"total: {len(planned)} jobs"), out[-3:]


def test_an_unknown_target_is_named_with_the_nearest_one(capsys):
    """Issue 26: `robustkd plan tabel1` ended with "snakemake dry run failed (...):" and the
    banner of Snakemake 9, whose reason is on stdout."""
    from robustkd.cli import main

    assert main(["plan", "tabel1"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'tabel1'" in err and "did you mean 'table1'?" in err
    assert "The targets: all, " in err and "SNAKEMAKE" not in err


def test_a_failed_dry_run_says_why_without_the_banner():
    from robustkd.dagpaths import failure_reason

    said = """Config file config/config.yaml is extended by additional config specified via the command line.
Assuming unrestricted shared filesystem usage.

SNAKEMAKE
=========
  Date: 2026-12-06 22:12:11
  Snakemake version: 9.27.1
  Config file(s): [PosixPath('config/demo.yaml')]

Building DAG of jobs...
WorkflowError in file "workflow/rules/common.smk", line 57:
invalid configuration: config key 'seeds.0': 'x' is not of type 'integer'
"""  # noqa: E501
    assert failure_reason(said).splitlines() == [
        'WorkflowError in file "workflow/rules/common.smk", line 57:',
        "invalid configuration: config key 'seeds.0': 'x' is not of type 'integer'",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["table1", "fig2", "--configfile", "a.yaml", "b.yml"],
        ["--configfile", "a.yaml", "b.yml", "table1", "fig2"],  # gave table1 to --configfile
        ["--configfile", "a.yaml", "--configfile", "b.yml", "--", "table1", "fig2"],
        ["table1", "--throughput", "distill=900", "fig2", "--configfile", "a.yaml", "b.yml"],
    ],
)
def test_targets_may_follow_the_options(argv, monkeypatch, capsys):
    """Issue 26: `robustkd plan --configfile A table1` said "table1: config file not found"."""
    import robustkd.config
    import robustkd.plan
    from robustkd.cli import main

    seen = {}

    def dry_run_jobs(targets, configfiles, **kw):
        seen.update(targets=list(targets), configfiles=list(configfiles))
        return []

    monkeypatch.setattr(robustkd.plan, "dry_run_jobs", dry_run_jobs)
    monkeypatch.setattr(robustkd.config, "load_config", lambda *a, **k: CONFIG)
    monkeypatch.setattr(robustkd.plan, "set_sizes", lambda *a, **k: SIZES)
    assert main(["plan", *argv]) == 0, capsys.readouterr().err
    assert seen == {"targets": ["table1", "fig2"], "configfiles": ["a.yaml", "b.yml"]}


def test_a_config_file_that_is_missing_is_still_named(tmp_path, capsys):
    from robustkd.cli import main

    assert main(["plan", "--configfile", str(tmp_path / "mine.yaml"), "table1"]) == 2
    assert f"{tmp_path / 'mine.yaml'}: config file not found" in capsys.readouterr().err


# --- measured throughputs (`robustkd plan --measured FILE`), from hand-made records -----------


def _check_record(path, steps, mode="gpu"):
    """A `make gpu-check` record (benchmarks/gpu_check.py): a header line, one line per step."""
    import json

    header = {"kind": "header", "mode": mode, "device": "NVIDIA H100 80GB HBM3"}
    lines = [header] + [
        {"kind": "step", "step": name, "status": status, "result": result}
        for name, status, result in steps
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _provenance(folder, rule, rate=None, device="cuda:0"):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    record = {"rule": rule, "device": device, "wildcards": {}}
    if rate is not None:
        record["train"] = {"steps": 10, "images_per_s": rate, "seconds": 1.0}
    (folder / "provenance.json").write_text(json.dumps(record))
    return folder / "provenance.json"


def test_measured_throughputs_from_a_gpu_check_record(tmp_path):
    from robustkd.plan import read_measured

    record = _check_record(
        tmp_path / "gpu_check.jsonl",
        [
            ("env", "ok", {"torch": "2.11.0"}),
            ("distill", "ok", {"img_per_s": 2500.0, "plan_throughput": {"distill": 2500.0}}),
            ("distill_compile", "ok", {"img_per_s": 3100.0}),  # not what the config runs
            ("finetune", "failed", {"plan_throughput": {"finetune": 9.0}}),  # failed: ignored
            ("evaluate", "ok", {"plan_throughput": {"evaluate": 7000, "nonsense": 5}}),
        ],
    )
    rates = read_measured(record)
    assert {k: v for k, (v, _) in rates.items()} == {"distill": 2500.0, "evaluate": 7000.0}
    what = rates["distill"][1]
    assert str(record) in what and "step distill" in what and "H100" in what and "gpu mode" in what


def test_measured_throughputs_from_provenance_records(tmp_path):
    from robustkd.plan import read_measured

    runs = tmp_path / "results"
    _provenance(runs / "distill/ours/mask-0.90/seed0", "distill", 2000.0)
    _provenance(runs / "distill/ours/mask-0.90/seed1", "distill", 2400.0)
    _provenance(runs / "distill/ours/mask-0.90/seed2", "distill", 2100.0)
    _provenance(runs / "finetune/imagenet100/ours/mask-0.90/frac1/seed0", "finetune", 3000.0)
    _provenance(runs / "data/imagenet100", "prepare_imagenet100")  # no training: ignored
    _provenance(runs / "eval", "evaluate_ladder")  # an evaluation records no images/s
    (runs / "broken").mkdir()
    (runs / "broken" / "provenance.json").write_text("{not json")  # skipped, not fatal
    rates = read_measured(runs)
    assert {k: v for k, (v, _) in rates.items()} == {"distill": 2100.0, "finetune": 3000.0}
    assert "median of 3 runs, device cuda:0" in rates["distill"][1]
    assert "1 run" in rates["finetune"][1]
    # one record alone
    one = read_measured(runs / "distill/ours/mask-0.90/seed1/provenance.json")
    assert one["distill"][0] == 2400.0


def test_files_without_a_throughput_are_refused_naming_what_to_give(tmp_path):
    import json

    from robustkd.plan import read_measured

    log = tmp_path / "log.jsonl"  # a run's step log: losses per step, no images/s
    step = {"step": 1, "epoch": 0, "lr": 1e-4, "loss": 3.0}
    log.write_text(json.dumps(step) + "\n")
    with pytest.raises(PlanError, match="step log .* no images/s; give the run's provenance"):
        read_measured(log)
    log.write_text(json.dumps(step) + "\n" + json.dumps({**step, "step": 2}) + "\n")
    with pytest.raises(PlanError, match="log.jsonl holds neither: give its provenance.json"):
        read_measured(log)
    with pytest.raises(PlanError, match="cannot read it"):
        read_measured(tmp_path / "missing.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="no provenance record of a training job below it"):
        read_measured(tmp_path / "empty")
    prep = _provenance(tmp_path / "prep", "prepare_cifar10")
    with pytest.raises(PlanError, match="not a training job's provenance record"):
        read_measured(prep)
    text = tmp_path / "notes.txt"
    text.write_text("distill 2000 img/s\n")
    with pytest.raises(PlanError, match="line 1: not JSON"):
        read_measured(text)
    cpu_only = _check_record(tmp_path / "failed.jsonl", [("distill", "failed", {})])
    with pytest.raises(PlanError, match="no throughput of a rule kind"):
        read_measured(cpu_only)


def test_a_plan_says_which_throughputs_are_assumed_measured_or_given(tmp_path):
    from robustkd.plan import resolve_throughput

    record = _check_record(
        tmp_path / "r.jsonl",
        [
            ("distill", "ok", {"plan_throughput": {"distill": 2500.0}}),
            ("evaluate", "ok", {"plan_throughput": {"evaluate": 7000.0}}),
        ],
    )
    later = _provenance(tmp_path / "run", "distill", 2222.0)
    got = resolve_throughput(["evaluate=5000"], [record, later])
    assert got.rates["distill"] == 2222.0  # the later file wins
    assert got.rates["evaluate"] == 5000.0  # --throughput wins over measured
    assert got.rates["finetune"] == DEFAULT_THROUGHPUT["finetune"]
    assert got.sources["distill"].startswith("measured: ") and str(later) in got.sources["distill"]
    assert got.sources["evaluate"] == "given (--throughput)"
    assert got.sources["finetune"] == "assumed"

    planned = plan_jobs(parse_dry_run(DRY_RUN), CONFIG, SIZES)
    lines = format_plan(planned, got.rates, 1, got.sources)
    head = lines[: lines.index("")]
    assert head[0] == "throughputs (images/s per GPU):"
    by_kind = {ln.split()[0]: ln for ln in head[1:-1]}
    assert set(by_kind) == {j.rule for j in planned if j.train_images} | {"evaluate"}
    assert "2,222  measured: " in by_kind["distill"]
    assert "5,000  given (--throughput)" in by_kind["evaluate"]
    assumed = "assumed (robustkd.plan.DEFAULT_THROUGHPUT), not measured"
    assert assumed in by_kind["finetune_fractions"]
    assert head[-1] == f"  ({len(by_kind) - 2} assumed, 2 measured or given)"
    assert lines[-1].startswith("total: ")
    # without sources: a default is assumed, anything else given
    bare = format_plan(planned, parse_throughput(["distill=10"]), 1)
    assert any("distill" in ln and "given" in ln for ln in bare[: bare.index("")])


def test_plan_command_reads_a_measured_record(tmp_path, capsys):
    from robustkd.cli import main

    record = _check_record(
        tmp_path / "gpu_check.jsonl", [("distill", "ok", {"plan_throughput": {"distill": 3400.0}})]
    )
    assert main(["plan", "table3", "--measured", str(record), "--gpus", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    distill = next(ln for ln in out if ln.strip().startswith("distill ") and "3,400" in ln)
    assert f"measured: {record}" in distill
    assert any(ln.strip().startswith("finetune") and "assumed" in ln for ln in out[:6])
    assert out[-1].startswith("total: ")
    # 36 distill jobs of 3,167,225 images at 3,400 img/s
    assert next(ln for ln in out if ln.startswith("distill ") and " jobs " in ln).endswith(
        "at 3,400 img/s"
    )
    assert main(["plan", "table3", "--measured", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read it" in capsys.readouterr().err
