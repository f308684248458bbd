"""Loading and validating the pipeline's configuration.

The Snakefile validates the merged config (config.yaml + overlay) with :func:`validate_config`
before anything runs. Errors name the offending key as a dotted path, e.g.
``config key 'distortions.mask-0.75.p': 1.5 is not less than 1``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from robustkd.errors import ConfigError
from robustkd.triggers import WorkflowFile

if TYPE_CHECKING:  # jsonschema is imported where a config is validated, not by table jobs
    import jsonschema

__all__ = [
    "WORKFLOW_FILE_KEYS",
    "distortion_entry",
    "load_config",
    "merge_configs",
    "resolve_workflow_files",
    "validate_config",
]

_DATASETS = ("imagenet100", "cifar10", "cifar100", "stl10", "resisc45", "camelyon17")
# Config keys that may name a file shipped with the workflow (relative to its checkout). Every
# other relative path (data roots, md5sums, weights) is relative to the working directory.
WORKFLOW_FILE_KEYS = (
    "data.datasets.imagenet100.class_list",
    "data.pretrain_corpus.class_list",
    "data.pretrain_corpus.exclude_class_list",
)


def merge_configs(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` into a copy of ``base`` recursively (as Snakemake merges configfiles).

    Mappings merge key by key; any other value (lists included) in ``overlay`` replaces the
    base value.

    Args:
        base: The base config.
        overlay: Values that take precedence.

    Returns:
        A new merged dict; neither argument is modified.
    """
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """Name the key of a schema error, descending into the most specific sub-error."""
    import jsonschema

    best = jsonschema.exceptions.best_match([error])
    if best.validator == "additionalProperties":
        # best.message: "Additional properties are not allowed ('x' was unexpected)"
        extra = sorted(set(best.instance) - set(best.schema.get("properties", {})))
        where = _path(best)
        keys = ", ".join(f"{where}.{k}" if where != "<top level>" else k for k in extra)
        return f"unknown config key '{keys}'"
    return f"config key '{_path(best)}': {best.message}"


def distortion_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The config entry of distortion ``name`` as the jobs take it.

    A ``family: mixed`` entry names its settings (``settings: [mask-0.75, ...]``, default:
    ``experiments.table1.distortions``); here ``settings`` becomes name -> entry, the form
    :class:`robustkd.distortions.mixed.MixedDistortion` is built from. Other entries are
    returned as they are (copied).

    Args:
        config: The merged config.
        name: A key of its ``distortions`` section.

    Returns:
        A new dict.

    Raises:
        ConfigError: ``name`` or one of its settings is not defined, a setting is mixed
            itself, or a mixed entry has no settings and there is no Table 1 to default to;
            the message names the config key.
    """
    distortions = config.get("distortions", {})
    if name not in distortions:
        raise ConfigError(
            f"config key 'distortions': unknown distortion {name!r} "
            f"(defined: {sorted(distortions)})"
        )
    entry = dict(distortions[name])
    if entry.get("family") != "mixed":
        return entry
    names = entry.get("settings")
    if names is None:
        names = (config.get("experiments") or {}).get("table1", {}).get("distortions")
        if not names:
            raise ConfigError(
                f"config key 'distortions.{name}.settings': missing, and there is no "
                "experiments.table1.distortions to default to"
            )
    settings = {}
    for s in names:
        if s not in distortions:
            raise ConfigError(
                f"config key 'distortions.{name}.settings': unknown distortion {s!r} "
                f"(defined: {sorted(distortions)})"
            )
        if distortions[s].get("family") == "mixed":
            raise ConfigError(
                f"config key 'distortions.{name}.settings': {s!r} is a mixed distortion itself"
            )
        settings[s] = dict(distortions[s])
    entry["settings"] = settings
    rates = entry.get("rates")
    if rates is not None:
        expected = [*settings, *(["clean"] if entry.get("include_clean") else [])]
        if set(rates) != set(expected) or not any(float(v) > 0 for v in rates.values()):
            raise ConfigError(
                f"config key 'distortions.{name}.rates': must give a weight to exactly "
                f"{expected} (include_clean adds 'clean'), not all 0; got {dict(rates)}"
            )
    return entry


def _check_references(config: Mapping[str, Any]) -> None:
    distortions = set(config.get("distortions", {}))
    for name, spec in config.get("distortions", {}).items():
        target = spec.get("stands_for")
        if target is not None and (target not in distortions or target == name):
            raise ConfigError(
                f"config key 'distortions.{name}.stands_for': unknown distortion {target!r}"
            )
    for name, spec in config.get("backbones", {}).items():
        if spec.get("weights") is None and "pretrain" not in spec:
            raise ConfigError(
                f"config key 'backbones.{name}.weights': null needs a 'pretrain' section "
                "(a backbone is never silently left at random initialisation)"
            )
        if spec.get("weights") is not None and "pretrain" in spec:
            raise ConfigError(
                f"config key 'backbones.{name}.weights': must be null with 'pretrain' "
                "(the pipeline writes the pretrained weights itself)"
            )
    methods = set(config.get("methods", {}).get("main", []))
    for exp, spec in (config.get("experiments") or {}).items():
        named = [("distortions", n) for n in spec.get("distortions", [])]
        named += [
            ("ladders", n) for lad in spec.get("ladders", []) for n in (lad["train"], *lad["test"])
        ]
        if "train" in spec:
            named.append(("train", spec["train"]))
        for key, name in named:
            if name not in distortions:
                raise ConfigError(
                    f"config key 'experiments.{exp}.{key}': unknown distortion {name!r} "
                    f"(defined: {sorted(distortions)})"
                )
        train = spec.get("train")
        if train is not None and config["distortions"][train].get("family") != "mixed":
            raise ConfigError(
                f"config key 'experiments.{exp}.train': {train!r} is not a mixed distortion "
                "(family: mixed)"
            )
        for name in spec.get("methods", []):
            if name not in methods:
                raise ConfigError(
                    f"config key 'experiments.{exp}.methods': unknown method {name!r} "
                    f"(methods.main: {sorted(methods)})"
                )
        for name in spec.get("datasets", []):
            if name not in _DATASETS:
                raise ConfigError(
                    f"config key 'experiments.{exp}.datasets': unknown dataset {name!r} "
                    f"(known: {list(_DATASETS)})"
                )
    _check_ladders(config)
    _check_corruptions(config)
    # A mixed distortion's settings and rates (after the experiments: its settings default
    # to experiments.table1.distortions).
    for name in config.get("distortions", {}):
        distortion_entry(config, name)


def _check_corruptions(config: Mapping[str, Any]) -> None:
    """The corruption table needs a benchmark corruption: its mCE is defined on them."""
    from robustkd.corruption_names import BENCHMARK_CORRUPTIONS

    spec = (config.get("experiments") or {}).get("corruptions") or {}
    names = spec.get("corruptions", [])
    if names and not set(names) & set(BENCHMARK_CORRUPTIONS):
        raise ConfigError(
            f"config key 'experiments.corruptions.corruptions': {names} holds none of the 15 "
            "benchmark corruptions, on which the mCE and the mean rows are defined; list at "
            f"least one of {', '.join(BENCHMARK_CORRUPTIONS)}"
        )


# The parameters that make a setting of each family stronger (all at least as large, one larger).
LADDER_PARAMETERS = {"mask": ("p",), "noise": ("sigma",), "blur": ("kernel", "sigma")}


def _check_ladders(config: Mapping[str, Any]) -> None:
    """Each Fig 2 test setting: the trained family, stronger in that family's parameters.

    Raises:
        ConfigError: A ladder trains on a family without a severity (``mixed``), or a test
            setting is of another family or not stronger; the message names the key and both
            settings with their values.
    """
    distortions = config.get("distortions", {})
    ladders = ((config.get("experiments") or {}).get("fig2") or {}).get("ladders", [])
    for i, lad in enumerate(ladders):
        key = f"experiments.fig2.ladders.{i}"
        train = distortions[lad["train"]]
        family = train.get("family")
        if family not in LADDER_PARAMETERS:
            raise ConfigError(
                f"config key '{key}.train': {lad['train']!r} is a {family} distortion; a ladder "
                f"trains on a setting of one of {sorted(LADDER_PARAMETERS)} and tests stronger ones"
            )
        params = LADDER_PARAMETERS[family]
        trained = ", ".join(f"{p} {train[p]}" for p in params)
        for j, name in enumerate(lad["test"]):
            test = distortions[name]
            if test.get("family") != family:
                raise ConfigError(
                    f"config key '{key}.test.{j}': {name!r} is a {test.get('family')} "
                    f"distortion, but the ladder trains on {lad['train']!r} ({family}); test "
                    f"settings must be {family} settings stronger than it"
                )
            weaker = [p for p in params if float(test[p]) < float(train[p])]
            if weaker or all(float(test[p]) == float(train[p]) for p in params):
                tested = ", ".join(f"{p} {test[p]}" for p in params)
                raise ConfigError(
                    f"config key '{key}.test.{j}': {name!r} ({tested}) is not stronger than the "
                    f"trained {lad['train']!r} ({trained}); a {family} test setting needs "
                    f"{' and '.join(params)} at least as large, and one larger"
                )


def validate_config(config: Mapping[str, Any], schema: str | os.PathLike[str]) -> None:
    """Validate a merged config against the JSON Schema and cross-references.

    Args:
        config: The merged configuration.
        schema: Path of ``config/schema.yaml``.

    Raises:
        ConfigError: The first problem found, naming the key.
    """
    with open(schema) as fh:
        schema_obj = yaml.safe_load(fh)
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema_obj)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    _check_references(config)


def load_config(
    path: str | os.PathLike[str],
    *overlays: str | os.PathLike[str],
    schema: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Load a config file, merge overlays over it and validate the result.

    Args:
        path: The base config (``config/config.yaml``).
        *overlays: Overlay files, applied in order.
        schema: The schema to validate against; default ``schema.yaml`` beside ``path``.

    Returns:
        The merged, validated config.

    Raises:
        ConfigError: A file is missing or not a mapping, or validation fails.
    """
    merged: dict[str, Any] = {}
    for p in (path, *overlays):
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        with open(p) as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{p}: top level must be a mapping")
        merged = merge_configs(merged, loaded)
    validate_config(merged, schema or Path(path).parent / "schema.yaml")
    return merged


def resolve_workflow_files(
    config: MutableMapping[str, Any],
    workflow_dir: str | os.PathLike[str],
    workdir: str | os.PathLike[str] = ".",
) -> dict[str, str]:
    """Point config paths of the workflow's own files at the workflow, in place.

    ``snakemake -s <checkout>/Snakefile -d <workdir>`` runs in ``workdir``, where a relative
    ``config/imagenet100.txt`` does not exist. For each key of :data:`WORKFLOW_FILE_KEYS`, a
    relative path is kept when it names a file in ``workdir`` (your own file, or the checkout
    itself when run there); otherwise, when it names a file of the workflow, it becomes that
    file's absolute path.

    Either way the value becomes a :class:`~robustkd.triggers.WorkflowFile`: the path jobs
    open, which Snakemake's params trigger compares by the value as written and the file's
    sha256, not by the checkout's location (another clone of the same commit reruns nothing;
    a changed file reruns what reads it).

    Args:
        config: The merged config (Snakemake's ``config``); changed in place.
        workflow_dir: The folder of the workflow's Snakefile.
        workdir: The working directory (relative paths of results and data start here).

    Returns:
        Dotted key -> new value, for each path that now names the workflow's file.

    Raises:
        ConfigError: The file is in neither place (the message names the key and both paths).
    """
    changed: dict[str, str] = {}
    for key in WORKFLOW_FILE_KEYS:
        *parents, leaf = key.split(".")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, MutableMapping) or not isinstance(node.get(leaf), str):
            continue
        value = node[leaf]
        if isinstance(value, WorkflowFile):
            value = value.written  # resolved before: again, from the config's value
        if Path(value).is_absolute() or (Path(workdir) / value).is_file():
            node[leaf] = _workflow_file(key, value, value, Path(workdir) / value)
            continue
        shipped = Path(workflow_dir).absolute() / value
        if not shipped.is_file():
            raise ConfigError(
                f"config key '{key}': {value!r} is neither a file of the working directory "
                f"({Path(workdir).absolute() / value}) nor of the workflow ({shipped}); "
                "fix the path (relative paths start in the working directory)"
            )
        node[leaf] = changed[key] = _workflow_file(key, shipped, value, shipped)
    return changed


def _workflow_file(key: str, path: str | os.PathLike[str], written: str, at: Path) -> str:
    """``path`` as a :class:`~robustkd.triggers.WorkflowFile` read at ``at``.

    Without such a file, ``path`` as it is: the job that reads it names it.
    """
    if not at.is_file():
        return os.fspath(path)
    try:
        return WorkflowFile(path, written, at=at)
    except OSError as exc:
        raise ConfigError(f"config key '{key}': cannot read {at} ({exc})") from None
