# All Python of the workflow: config validation, wildcard constraints, target helpers.
import importlib.util
import os
import re
import sys
from pathlib import Path

from snakemake.logging import logger

# The workflow runs from a plain checkout: its src/ goes first on sys.path, and Snakemake stops
# if robustkd comes from elsewhere (unless ROBUSTKD_USE_INSTALLED=1), as in every job.
_spec = importlib.util.spec_from_file_location(
    "robustkd_checkout",
    Path(workflow.basedir) / "workflow" / "scripts" / "robustkd_checkout.py",
)
_checkout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checkout)
_checkout.use_checkout_package()

import yaml

from robustkd.config import distortion_entry, resolve_workflow_files, validate_config
from robustkd.config_args import coerce_config, config_hint
from robustkd.datasources import demo_raw_spec, raw_input
from robustkd.errors import ConfigError
from robustkd.gpus import check_gpu_requests, stated_requests
from robustkd.labelfractions import fraction_min_steps, fraction_warnings
from robustkd.plan import set_sizes
from robustkd.timelimit import job_runtime
from robustkd.report.claims import claim_inputs, paper_claims
from robustkd.report.pages import is_report_command
from robustkd.triggers import library_digest, scientific
from robustkd.layout import (
    CLEAN_TEST,
    CORRUPTION_FIGURE,
    CORRUPTION_TABLE,
    DISTILL_METHODS,
    FIG4_ATTENTION,
    FINETUNE_KINDS,
    IMPLEMENTED_METHODS,
    PRETRAINED_METHODS,
    backbone_of,
    corruption_eval_file,
    corruption_models,
    corruption_outputs,
    corruption_set_files,
    corruption_set_labels,
    distill_weights,
    evaluation_tests,
    fetched_weights,
    figure_files,
    finetune_files,
    finetune_runs,
    fraction_tag,
    ladder_file,
    record_beside,
    run_record,
    table_cells,
    teacher_weights,
)

DATASETS = ["imagenet100", "cifar10", "cifar100", "stl10", "resisc45", "camelyon17"]

# The workflow's own files (schema, class list, scripts, envs) are found beside the Snakefile;
# results, logs and data paths are relative to the working directory (`-d`, default: here).
WORKFLOW_DIR = Path(workflow.basedir).absolute()

# Values given with --config arrive as strings inside lists and mappings (seeds=[0] gives
# ["0"]): typed as the schema says where it is unambiguous (robustkd.config_args).
_GIVEN = dict(getattr(getattr(workflow, "config_settings", None), "config", None) or {})
try:
    with open(WORKFLOW_DIR / "config" / "schema.yaml") as _fh:
        coerce_config(config, yaml.safe_load(_fh), _GIVEN)
    validate_config(config, WORKFLOW_DIR / "config" / "schema.yaml")
    resolve_workflow_files(config, WORKFLOW_DIR)
except ConfigError as exc:
    raise WorkflowError(
        f"invalid configuration: {exc}{config_hint(str(exc), _GIVEN)}"
    ) from None

# Rerun triggers (robustkd.triggers): Snakemake reruns a job whose params changed. Params never
# hold the checkout's location (a shipped file's path compares by its config value and sha256)
# nor operational settings, which change no output: `checkpoint_every` and `log_every` of every
# training section (training.*, backbones.*.pretrain, craft.teacher/student.train). Rules pass
# scientific(...) of a section; the job puts the operational values back from its
# snakemake.config (with_operational), and its provenance record names them. Every other key is
# scientific and reruns what uses it (amp, amp_dtype and compile too: they change arithmetic).
# Threads, GPUs, memory and runtime are resources: never triggers.
# The rules that only read results (tables, figures, claims, pages) also take LIBRARY, the
# digest of the package's source: a library change (a decision rule, a layout) reruns them, not
# the trainings (`--forcerun <rule>` does).
LIBRARY = library_digest(Path(sys.modules["robustkd"].__file__).parent)

# Fig 3's fractions that keep another number of images than they ask (once, not in every job).
if getattr(workflow, "is_main_process", True):
    for _warning in fraction_warnings(config):
        logger.warning(f"warning: {_warning}")

# GPUs: the rules declare none; the profile asks for them per training job, with `gpu` or a gpu
# `gres` (robustkd.gpus), and the job runs one process per GPU. Both at once stop here, given in
# a profile or on the command line (`--set-resources 'distill:gres="gpu:a100:2"'`).


try:
    _settings = workflow.resource_settings
    check_gpu_requests(
        stated_requests(_settings.default_resources),
        {
            r: stated_requests(res)
            for r, res in dict(_settings.overwrite_resources).items()
        },
    )
except ConfigError as exc:
    raise WorkflowError(f"invalid resources: {exc}") from None


def planned_runtime(rule_name):
    """Resource function: the job's time limit in minutes (sbatch -t) from its plan, with a
    margin, longer on each retry (robustkd.timelimit). A profile's `runtime` replaces it.
    """

    def runtime(wildcards, attempt):
        sizes = set_sizes(config)
        return job_runtime(rule_name, dict(wildcards.items()), config, sizes, attempt)

    return runtime


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


def get_wildcard_constraints():
    """Regexes of every wildcard: names must be exactly one of the configured ones."""
    return {
        "dataset": _alternatives(DATASETS),
        "distortion": _alternatives(config["distortions"]),
        "backbone": _alternatives(config["backbones"]),
        "method": _alternatives(IMPLEMENTED_METHODS),
        "distill_method": _alternatives(DISTILL_METHODS),
        "fraction": r"[0-9]+(\.[0-9]+)?(e-?[0-9]+)?",
        "seed": _alternatives(str(s) for s in config["seeds"]),
        "size": r"\d+",
        "table": "table1|table2|table3|table4",
        "figure": "fig2|fig3",
    }


SEEDS = config["seeds"]
# Training jobs (distill, distill_ci, the fine-tunings, craft_student): one per seed, whose
# outputs and log carry a {seed} wildcard, or one for every seed (jobs.seeds_per_job).
PER_SEED = config["jobs"]["seeds_per_job"] == "one"
JOB_SEEDS = ["{seed}"] if PER_SEED else SEEDS


def get_job_seeds(wildcards):
    """The seeds one training job trains: its {seed}, or every configured seed."""
    return [int(wildcards.seed)] if PER_SEED else list(SEEDS)


def job_log(stem, ext="log"):
    """A training job's log (or benchmark) file: one per seed, or one for every seed."""
    return f"{stem}/seed{{seed}}.{ext}" if PER_SEED else f"{stem}.{ext}"


# The rule of each kind of fine-tuning job (workflow/rules/finetune.smk).
FINETUNE_RULES = {
    "table": "finetune",
    "fractions": "finetune_fractions",
    "transfer": "transfer",
}


def get_prepared_datasets():
    """Prepared folders of every dataset."""
    return [f"results/data/{ds}" for ds in DATASETS]


def get_final_output():
    """Everything `all` builds."""
    return [
        *get_prepared_datasets(),
        *get_table_targets("table1"),
        *get_table_targets("table2"),
        *get_table_targets("table3"),
        *CLAIMS_OUTPUTS,
        *figure_files("distill_loss"),
        *figure_files("fig2"),
        *figure_files("fig3"),
        *figure_files("fig4"),
        *get_craft_outputs(),  # workflow/rules/craft_common.smk
    ]


CLAIMS_OUTPUTS = [
    f"results/tables/claims.{ext}" for ext in ("csv", "md", "html", "provenance.json")
]


def get_beyond_outputs():
    """Everything `beyond` builds: Table 4 and the corruption table and figure."""
    return [*get_table_targets("table4"), *corruption_outputs()]


# The report (`snakemake --report report.html`, or `.zip`). Snakemake reports the outputs flagged
# report(...) of every job in the DAG of the targets, and stops at the first that does not exist.
# A report of the default target therefore reports what exists: in a command that only reports,
# `all` stands for what of `all` and `beyond` has been built (after `snakemake table1`: Table 1
# and its provenance), and the rest is named as left out. A named target (`snakemake table1
# --report report.html`) reports that target and needs it built; `--report-after-run` runs the
# targets first, `all` in full.
REPORT_ONLY = is_report_command(sys.argv)
_LEFT_OUT = []


def get_all_inputs(wildcards):
    """The input of `all`: everything it builds; in a report, what exists of `all` and `beyond`
    (an input function: only a DAG that holds `all` says what it leaves out, once)."""
    if not REPORT_ONLY:
        return get_final_output()
    wanted = list(dict.fromkeys([*get_final_output(), *get_beyond_outputs()]))
    built = [f for f in wanted if os.path.exists(f)]
    missing = [f for f in wanted if f not in built]
    if missing and not _LEFT_OUT:
        _LEFT_OUT.extend(missing)
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        print(
            f"Report of what exists: {len(missing)} of the {len(wanted)} outputs of `all` and "
            f"`beyond` are not built and are left out ({shown}).",
            file=sys.stderr,
        )
    return built


def get_table_subcategory(wildcards):
    """The report's subcategory of a table: the main paper's, or beyond it (Table 4)."""
    return "Beyond the paper" if wildcards.table == "table4" else "Main paper"


def get_claims_labels(wildcards, output):
    """Labels of the claims table in the report: its verdict counts, read from the table."""
    import csv
    from collections import Counter

    from robustkd.report.verdicts import VERDICTS

    with open(output.csv, newline="") as f:
        n = Counter(row["verdict"] for row in csv.DictReader(f))
    return {"table": "claims", "verdicts": ", ".join(f"{n[v]} {v}" for v in VERDICTS)}


def for_report(files, flags):
    """`files`, each one that `flags` names flagged for the report: path -> report() kwargs."""
    return [report(f, **flags[f]) if f in flags else f for f in files]


def get_claims_inputs(wildcards):
    """Every metrics file the paper's claims are tested on (rule claims)."""
    return claim_inputs(paper_claims(config))


def get_distill_curve_runs(wildcards):
    """(method, distortion, seed, student) of every distillation the tables use."""
    exp = config["experiments"]
    pairs = {
        (m, d)
        for name in ("table1", "table2", "table3")
        for m in exp[name]["methods"]
        if m in PRETRAINED_METHODS
        for d in exp[name]["distortions"]
    }
    return [
        (m, d, s, distill_weights(m, d, s)) for m, d in sorted(pairs) for s in SEEDS
    ]


def get_distill_curve_students(wildcards):
    """The students whose logs the loss curves read."""
    return [r[3] for r in get_distill_curve_runs(wildcards)]


def get_table_outputs(name):
    """A table's CSV, Markdown, LaTeX, HTML and cell -> metrics provenance files."""
    exts = ("csv", "md", "tex", "html", "provenance.json")
    return [f"results/tables/{name}.{ext}" for ext in exts]


def provenance_page(name):
    """The report's page of a table's provenance (written by provenance_page)."""
    return f"results/report/provenance/{name}.html"


def get_table_targets(name):
    """What a table's target builds: its files and the report's page of its provenance."""
    return [*get_table_outputs(name), provenance_page(name)]


def get_table_metrics(wildcards):
    """Every metrics file a table reads (all cells, all seeds)."""
    cells = table_cells(config, wildcards.table)
    return sorted({m for cell in cells for m in cell.metrics})


def get_backbone_spec(name):
    """A backbone's spec for robustkd.models.create_backbone, weights resolved to a file.

    A backbone with a `pretrain` section is pretrained by the pipeline, once per training
    seed (by pretrain_backbone); its spec names the pattern of those files, seed*, and each
    job loads its seed's file (get_teacher_files). Hub weights are the output of rule
    fetch_weights.
    """
    spec = {k: v for k, v in config["backbones"][name].items() if k != "pretrain"}
    if is_pretrained_here(name):
        spec["weights"] = teacher_weights(name, "*")
    elif spec["weights"] == "hub":
        spec["weights"] = fetched_weights(name)["weights"]
    return spec


def is_pretrained_here(name):
    """Whether the pipeline pretrains backbone `name` (a `pretrain` section): per seed."""
    return "pretrain" in config["backbones"][name]


def get_backbone_weights(name, seed):
    """The weights file a backbone loads for training seed `seed`, as a rule input."""
    if is_pretrained_here(name):
        return [teacher_weights(name, seed)]
    weights = get_backbone_spec(name)["weights"]
    return [] if weights is None else [weights]


def get_teacher_files(name):
    """Input function: the teacher weights a training job reads, each seed's in the job's seed
    order (one file for every seed unless the pipeline pretrains the backbone)."""

    def files(wildcards):
        per_seed = get_seed_teachers(name)(wildcards)
        return get_backbone_weights(name, None) if per_seed is None else per_seed

    return files


def get_seed_teachers(name):
    """Params function: each seed's teacher weights (same order as the job's seeds), or None
    where every seed loads the backbone spec's own weights."""

    def teachers(wildcards):
        if not is_pretrained_here(name):
            return None
        return [teacher_weights(name, s) for s in get_job_seeds(wildcards)]

    return teachers


def get_hub_backbone_config(wildcards):
    """The config entry (`weights: hub`) of the backbone rule fetch_weights downloads."""
    spec = config["backbones"][wildcards.backbone]
    if spec.get("weights") != "hub":
        raise WorkflowError(
            f"backbone {wildcards.backbone!r} has weights {spec.get('weights')!r}, not 'hub': "
            "nothing to fetch"
        )
    return spec


def get_distortion(wildcards):
    """The config entry of the job's distortion (a mixed one with its settings' entries)."""
    return distortion_entry(config, wildcards.distortion)


def get_backbone_config(wildcards):
    """The config entry of the job's backbone (with its pretrain section), without its
    operational settings (the job reads them from its config)."""
    return scientific(config["backbones"][wildcards.backbone])


def get_distill_outputs(method="{distill_method}"):
    """The students of one pretraining job: its seed's or every seed's (wildcards kept)."""
    return [distill_weights(method, "{distortion}", s) for s in JOB_SEEDS]


def get_distill_records(method="{distill_method}"):
    """The provenance records of one pretraining job: one per student's run folder."""
    return [run_record(f) for f in get_distill_outputs(method)]


def ladder_record(method, distortion):
    """The record of an evaluate_ladder job: `ladder.provenance.json` beside its ladder file
    (evaluate_corruptions writes into the same folder)."""
    return record_beside(ladder_file(method, distortion))


def corruption_eval_record(method, distortion):
    """The record of an evaluate_corruptions job: `corruptions.provenance.json` beside its
    scores."""
    return record_beside(corruption_eval_file(method, distortion))


def get_method_backbone_spec(wildcards):
    """The backbone the job's method fine-tunes (CLIP's for CI, else the ViT)."""
    return get_backbone_spec(backbone_of(wildcards.method))


def get_finetune_outputs(kind, what):
    """Weights, metrics or record of every run of one fine-tuning job of `kind` (wildcards
    kept)."""
    files = [
        finetune_files(d, "{method}", "{distortion}", f, s)
        for d, f, s in finetune_runs(config, kind, JOB_SEEDS)
    ]
    if what == "record":
        return [run_record(f["model"]) for f in files]
    return [f[what] for f in files]


def _init_weights(wildcards, seed):
    if wildcards.method in PRETRAINED_METHODS:
        return distill_weights(wildcards.method, wildcards.distortion, seed)
    backbone = backbone_of(wildcards.method)
    if is_pretrained_here(backbone):  # the supervised baseline: its seed's teacher
        return teacher_weights(backbone, seed)
    return None


def get_finetune_inputs(kind):
    """Input function of a fine-tuning job: its datasets and initial weights."""

    def inputs(wildcards):
        datasets = sorted({d for d, _, _ in finetune_runs(config, kind)})
        init = [_init_weights(wildcards, s) for s in get_job_seeds(wildcards)]
        if None in init:
            init = get_backbone_weights(backbone_of(wildcards.method), None)
        return {"data": [f"results/data/{d}" for d in datasets], "init": init}

    return inputs


def get_finetune_runs(kind):
    """Params function: the runs (dataset, fraction, seed, init, output) of one job."""

    # Fig 3's runs train at least experiments.fig3.min_steps steps (absent or 0: not a param).
    floor = fraction_min_steps(config) if kind == "fractions" else 0

    def runs(wildcards):
        out = []
        for d, f, s in finetune_runs(config, kind, get_job_seeds(wildcards)):
            files = finetune_files(d, wildcards.method, wildcards.distortion, f, s)
            out.append(
                {
                    "data_dir": f"results/data/{d}",
                    "fraction": float(f),
                    "seed": s,
                    "init": _init_weights(wildcards, s),
                    "out": files["model"],
                }
                | ({"min_steps": floor} if floor else {})
            )
        return out

    return runs


def get_ladder_models(wildcards):
    """The fine-tuned ImageNet-100 classifiers (every seed) that Fig 2 evaluates."""
    return [
        finetune_files("imagenet100", wildcards.method, wildcards.distortion, "1", s)[
            "model"
        ]
        for s in SEEDS
    ]


def get_ladder_tests(wildcards):
    """Test distortions of a training distortion: itself, then Fig 2's stronger ones or
    Table 4's test settings (clean: None)."""
    return {
        n: None if n == CLEAN_TEST else distortion_entry(config, n)
        for n in evaluation_tests(config, wildcards.distortion)
    }


def get_figure_inputs(wildcards):
    """The metrics files a figure reads."""
    exp = config["experiments"][wildcards.figure]
    if wildcards.figure == "fig2":
        return [
            ladder_file(m, lad["train"])
            for m in exp["methods"]
            for lad in exp["ladders"]
        ]
    return [
        finetune_files("imagenet100", m, d, fraction_tag(f), s)["metrics"]
        for m in exp["methods"]
        for d in exp["distortions"]
        for f in exp["fractions"]
        for s in SEEDS
    ]


def get_fig4_inputs(wildcards):
    """Teacher, our students and the supervised classifiers (seed 0) that Fig 4 shows."""
    seed = SEEDS[0]
    dists = config["experiments"]["fig4"]["distortions"]
    return {
        "data": "results/data/imagenet100",
        "teacher": get_backbone_weights("vit", seed),
        "ours": [distill_weights("ours", d, seed) for d in dists],
        "supervised": [
            finetune_files("imagenet100", "supervised", d, "1", seed)["model"]
            for d in dists
        ],
    }


def get_fig4_distortions():
    """Config entries of Fig 4's distortions."""
    return [
        config["distortions"][d] for d in config["experiments"]["fig4"]["distortions"]
    ]


def get_raw_input(dataset, corpus=False):
    """Raw data a preparation depends on: the miniature's folder when its root is that folder.

    With demo_raw enabled, a dataset whose root points at real data gets no miniature
    (robustkd.datasources). Real raw data lives outside the workflow (a local copy or a
    download into its root) and is hashed into the provenance instead of being tracked as an
    input.
    """
    return raw_input(config, dataset, corpus=corpus)


def get_pretrain_data(wildcards):
    """The prepared corpus a backbone is pretrained on: never the target ImageNet-100."""
    if "pretrain_corpus" not in config["data"]:
        raise WorkflowError(
            f"backbone {wildcards.backbone!r} has a pretrain section but the config has no "
            "data.pretrain_corpus (classes disjoint from ImageNet-100's to pretrain it on)"
        )
    return "results/data/pretrain_corpus"


def get_pretrain_corpus_source(wildcards):
    """The config section `data.pretrain_corpus` (root, class lists)."""
    return config["data"]["pretrain_corpus"]


def get_dataset_source(dataset):
    """The config section `data.datasets.<dataset>` (root, checksums, options)."""
    return config["data"]["datasets"][dataset]


def get_demo_raw_spec(wildcards):
    """Sizes of one dataset's miniature (imagenet100 also gets its class list and subset)."""
    return demo_raw_spec(config, wildcards.dataset)


# Beyond the paper: corruptions never trained on (workflow/rules/corruptions.smk).


def _backbone_size(name):
    """Input side of a backbone: `input_size`, else `kwargs.img_size`, else 224 (the timm tag
    of both paper backbones; the evaluation job checks the stored set against the real one).
    """
    spec = config["backbones"][name]
    return int(spec.get("input_size") or spec.get("kwargs", {}).get("img_size") or 224)


def _method_size(method):
    return _backbone_size(backbone_of(method))


def get_corruption_set_outputs():
    """The stored corrupted evaluation set at {size} px, one file per corruption."""
    return list(corruption_set_files(config, "{size}").values())


def get_corruption_set_params(wildcards):
    """Corruption -> stored file, at the job's size."""
    return corruption_set_files(config, wildcards.size)


def get_corruption_eval_set(wildcards):
    """The stored set at the input size of the method's backbone."""
    return list(corruption_set_files(config, _method_size(wildcards.method)).values())


def get_corruption_eval_set_params(wildcards):
    """Corruption -> stored file, at the input size of the method's backbone."""
    return corruption_set_files(config, _method_size(wildcards.method))


def get_corruption_eval_labels(wildcards):
    """The stored labels at the input size of the method's backbone."""
    return corruption_set_labels(_method_size(wildcards.method))


def get_corruption_report_models():
    """(method, training distortion, corruptions.json) of every Table 1 model."""
    return [(m, d, corruption_eval_file(m, d)) for m, d in corruption_models(config)]


def get_corruption_report_flags():
    """The corruption table (HTML) and figure in the report: path -> report() arguments."""
    return {
        f"{CORRUPTION_TABLE}.html": {
            "caption": "../report/corruptions_table.rst",
            "category": "Tables",
            "subcategory": "Beyond the paper",
            "labels": {"table": "corruptions"},
        },
        f"{CORRUPTION_FIGURE}.png": {
            "caption": "../report/corruptions_figure.rst",
            "category": "Figures",
            "subcategory": "Beyond the paper",
            "labels": {"figure": "corruptions"},
        },
    }


def get_corruption_report_inputs():
    """Every file the corruption table and figure read."""
    return [f for _, _, f in get_corruption_report_models()]


_CORRUPTION_BASELINE = config["experiments"]["corruptions"]["baseline"]
if _CORRUPTION_BASELINE not in config["experiments"]["table1"]["methods"]:
    raise WorkflowError(
        f"invalid configuration: experiments.corruptions.baseline: {_CORRUPTION_BASELINE!r} "
        f"is not a Table 1 method (experiments.table1.methods: "
        f"{config['experiments']['table1']['methods']})"
    )
