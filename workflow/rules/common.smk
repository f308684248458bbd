# All Python of the workflow: config validation, wildcard constraints, target helpers.
import re
import sys
from pathlib import Path

# The workflow runs from a plain checkout: the package's source is importable without install.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from robustkd.config import validate_config
from robustkd.errors import ConfigError
from robustkd.layout import (
    DISTILL_METHODS,
    IMPLEMENTED_METHODS,
    distill_weights,
    finetune_files,
    table_cells,
    teacher_weights,
)

DATASETS = ["imagenet100", "cifar10", "cifar100", "stl10", "resisc45", "camelyon17"]

try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None


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
        "seed": r"\d+",
        "table": "table1|table3",
    }


SEEDS = config["seeds"]


def get_prepared_datasets():
    """Prepared folders of every dataset."""
    return [f"results/data/{ds}" for ds in DATASETS]


def get_final_output():
    """Everything `all` builds."""
    return [
        *get_prepared_datasets(),
        *get_table_outputs("table1"),
        *get_table_outputs("table3"),
    ]


def get_table_outputs(name):
    """The CSV, Markdown and LaTeX files of a table."""
    return [f"results/tables/{name}.{ext}" for ext in ("csv", "md", "tex")]


def get_table_metrics(wildcards):
    """Every metrics file a table reads (all cells, all seeds)."""
    cells = table_cells(config, wildcards.table)
    return sorted({m for cell in cells for m in cell.metrics})


def get_backbone_spec(name):
    """A backbone's spec for robustkd.models.create_backbone, weights resolved.

    A backbone with a `pretrain` section is pretrained by the pipeline: its weights are the
    output of rule pretrain_backbone.
    """
    spec = {k: v for k, v in config["backbones"][name].items() if k != "pretrain"}
    if "pretrain" in config["backbones"][name]:
        spec["weights"] = teacher_weights(name)
    return spec


def get_backbone_weights(name):
    """The weights file a backbone loads, as a rule input (none for hub downloads)."""
    weights = get_backbone_spec(name)["weights"]
    return [] if weights in (None, "hub") else [weights]


def get_distortion(wildcards):
    """The config entry of the job's distortion."""
    return config["distortions"][wildcards.distortion]


def get_backbone_config(wildcards):
    """The config entry of the job's backbone (with its pretrain section)."""
    return config["backbones"][wildcards.backbone]


def get_distill_outputs():
    """The students of every seed of one distillation job (wildcards kept)."""
    return [distill_weights("{distill_method}", "{distortion}", s) for s in SEEDS]


def get_finetune_outputs(kind):
    """Weights or metrics of every seed of one fine-tuning job (wildcards kept)."""
    return [
        finetune_files("{dataset}", "{method}", "{distortion}", "{fraction}", s)[kind]
        for s in SEEDS
    ]


def get_finetune_init(wildcards):
    """Per-seed initial weights: the distilled students, or the backbone (supervised)."""
    if wildcards.method in DISTILL_METHODS:
        return [
            distill_weights(wildcards.method, wildcards.distortion, s) for s in SEEDS
        ]
    return get_backbone_weights("vit")


def get_finetune_init_params(wildcards):
    """Per-seed initial weights for the script (None: the backbone's own weights)."""
    if wildcards.method in DISTILL_METHODS:
        return get_finetune_init(wildcards)
    return [None] * len(SEEDS)


def get_raw_input(dataset):
    """Raw data each preparation depends on; the miniature's folder when the demo writes it.

    Real raw data lives outside the workflow (a local copy or a download into its root) and is
    hashed into the provenance instead of being tracked as an input.
    """
    if config["demo_raw"]["enabled"]:
        return f"results/raw_demo/{dataset}"
    return []


def get_dataset_source(dataset):
    """The config section `data.datasets.<dataset>` (root, checksums, options)."""
    return config["data"]["datasets"][dataset]


def get_demo_raw_spec(wildcards):
    """Sizes of one dataset's miniature (imagenet100 also gets its class list and subset)."""
    spec = dict(config["demo_raw"].get(wildcards.dataset, {}))
    if wildcards.dataset == "imagenet100":
        source = get_dataset_source("imagenet100")
        spec["class_list"] = source["class_list"]
        spec["n_classes"] = source.get("n_classes", 100)
    return spec
