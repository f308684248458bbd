# All Python of the workflow: config validation, wildcard constraints, target helpers.
import re
import sys
from pathlib import Path

# The workflow runs from a plain checkout: the package's source is importable without install.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from robustkd.config import validate_config
from robustkd.errors import ConfigError

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
        "seed": r"\d+",
    }


def get_prepared_datasets():
    """Prepared folders of every dataset."""
    return [f"results/data/{ds}" for ds in DATASETS]


def get_final_output():
    """Everything `all` builds."""
    return get_prepared_datasets()


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
