"""What a run will cost before it runs: training jobs, images processed, GPU-hours, wall time.

``robustkd plan all --configfile config/demo.yaml`` asks Snakemake for the jobs of a target (a
forced dry run: every job the target needs, whatever exists already), keeps the training and
evaluation jobs, and counts for each the images it pushes through the network:

- training images: optimisation steps x batch, i.e. ``epochs x training-set size`` per seed and
  run (a step processes a batch forward and backward; distillation also runs the frozen
  teacher's forward on the same images, which the rule's throughput includes);
- evaluation images: forward passes only, ``repeats x evaluation-set size`` per evaluation.

GPU-hours follow from a throughput in images per second per GPU, per rule kind: the defaults
below (:data:`DEFAULT_THROUGHPUT`), which are **assumed**, not measured; or measured ones read
from a file (``--measured FILE``, :func:`read_measured`): the record of ``make gpu-check``
(``results/gpu_check/gpu_check.jsonl``) or the provenance records of a previous run's training
jobs (a ``provenance.json`` or a folder holding them: each records its run's images/s); or given
on the command line (``--throughput distill=1800``), which wins over both. Every plan prints
where each of its throughputs came from. Wall time on N GPUs is the makespan of the
jobs placed longest first on the least-loaded GPU, ignoring the DAG's dependencies and each
job's own parallelism (a lower bound when dependencies serialise jobs; seeds inside one job run
one after another). A training job trains the seed of its ``seed`` wildcard (one job per seed,
``jobs.seeds_per_job: one``) or, without one, every configured seed (``all``).

Set sizes come from the prepared datasets when they exist (``results/data/<dataset>/manifest
.csv``); otherwise from the official split sizes (:data:`OFFICIAL_SIZES`). The offline
miniature writes its own data: prepare it first (``snakemake data --configfile
config/demo.yaml``, about a minute) or the plan stops naming the missing dataset.
"""

from __future__ import annotations

import csv
import difflib
import functools
import heapq
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.dagpaths import DagError, dry_run, parse_jobs, target_rules
from robustkd.errors import PlanError
from robustkd.labelfractions import fraction_min_steps, fraction_run_epochs
from robustkd.layout import evaluation_tests, finetune_runs
from robustkd.throughput import (
    ASSUMED,
    DEFAULT_THROUGHPUT,
    GIVEN,
    Throughputs,
    parse_throughput,
    read_measured,
    resolve_throughput,
)

__all__ = [
    "DEFAULT_THROUGHPUT",
    "OFFICIAL_SIZES",
    "PlanError",
    "PlannedJob",
    "Throughputs",
    "dry_run_jobs",
    "format_plan",
    "makespan",
    "parse_throughput",
    "plan_jobs",
    "read_measured",
    "resolve_throughput",
    "set_sizes",
    "throughput_lines",
]


# Training and evaluation split sizes of the splits the pipeline prepares (train, scored split).
# Sources: the datasets' releases, listed in docs/data.md (ImageNet-100: CMC's 100 classes of
# ILSVRC-2012, val as test; RESISC45: torchgeo's split; CAMELYON17: WILDS, train and the
# official test hospital).
OFFICIAL_SIZES: dict[str, tuple[int, int]] = {
    "imagenet100": (126_689, 5_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "stl10": (5_000, 8_000),
    "resisc45": (18_900, 6_300),
    "camelyon17": (302_436, 85_054),
}

_FINETUNE_KINDS = {"finetune": "table", "finetune_fractions": "fractions", "transfer": "transfer"}


@dataclass
class PlannedJob:
    """One job of the plan.

    Attributes:
        rule: The Snakemake rule.
        wildcards: Its wildcards.
        train_images: Images through forward and backward passes (all its seeds and runs).
        eval_images: Images through forward passes only.
        runs: Human-readable pieces of work, e.g. ``"imagenet100 x25 ep x3 seeds"``.
    """

    rule: str
    wildcards: dict[str, str]
    train_images: int = 0
    eval_images: int = 0
    runs: list[str] = field(default_factory=list)

    def gpu_hours(self, throughput: Mapping[str, float]) -> float:
        """GPU-hours at ``throughput`` (images/s per GPU by rule, ``evaluate`` for eval)."""
        train = self.train_images / throughput[self.rule] if self.train_images else 0.0
        return (train + self.eval_images / throughput["evaluate"]) / 3600.0


def dry_run_jobs(
    targets: Sequence[str],
    configfiles: Sequence[str],
    *,
    snakefile: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] = ".",
) -> list[tuple[str, dict[str, str]]]:
    """Every job of ``targets`` as (rule, wildcards), from a forced Snakemake dry run.

    Raises:
        PlanError: Snakemake failed: an unknown target is named with the workflow's targets
            (and the nearest one); otherwise what Snakemake said is included.
    """
    try:
        jobs = dry_run(targets, configfiles, snakefile=snakefile, workdir=workdir)
    except DagError as exc:
        unknown = re.search(r"No rule to produce (\S+)", exc.output)
        if unknown is None:
            raise PlanError(str(exc)) from None
        msg = _unknown_target(unknown.group(1), configfiles, snakefile, workdir)
        raise PlanError(msg) from None
    return [(j.rule, dict(j.wildcards)) for j in jobs]


def _unknown_target(
    target: str,
    configfiles: Sequence[str],
    snakefile: str | os.PathLike[str] | None,
    workdir: str | os.PathLike[str],
) -> str:
    """The message for a target no rule produces: the workflow's targets, the nearest one."""
    try:
        named = target_rules(configfiles, snakefile=snakefile, workdir=workdir)
    except DagError:
        named = []
    near = difflib.get_close_matches(target, named, n=1)
    msg = f"unknown target {target!r}: no rule of the workflow makes it, nor a file of that name"
    if near:
        msg += f"; did you mean {near[0]!r}?"
    if named:
        msg += f" The targets: {', '.join(named)} (or any output file of the pipeline)"
    return msg


def parse_dry_run(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse Snakemake's dry-run listing into (rule, wildcards) pairs, in listing order."""
    return [(j.rule, dict(j.wildcards)) for j in parse_jobs(text)]


@functools.lru_cache(maxsize=64)
def _split_counts(manifest: str, mtime_ns: int, size: int) -> Counter[str]:
    """Rows per split of a manifest, read once per version of the file.

    The workflow asks for the sizes once per job (``robustkd.timelimit``).
    """
    with open(manifest, newline="") as f:
        return Counter(row["split"] for row in csv.DictReader(f))


def set_sizes(
    config: Mapping[str, Any], root: str | os.PathLike[str] = "."
) -> dict[str, tuple[int, int]]:
    """(training, scored) sizes of each dataset: prepared manifests, else official sizes.

    The scored split is ``test`` if the dataset has one, else ``val`` (as the jobs score).
    Datasets the miniature writes have no official size: without their manifest they are left
    out, and :func:`plan_jobs` names them if a job needs them.
    """
    sizes: dict[str, tuple[int, int]] = {}
    demo = bool(config.get("demo_raw", {}).get("enabled"))
    names = [*config.get("data", {}).get("datasets", OFFICIAL_SIZES)]
    if "pretrain_corpus" in config.get("data", {}):
        names.append("pretrain_corpus")  # the stand-in teachers' corpus (miniature)
    for name in names:
        manifest = Path(root) / "results" / "data" / name / "manifest.csv"
        if manifest.is_file():
            stat = manifest.stat()
            counts = _split_counts(str(manifest.absolute()), stat.st_mtime_ns, stat.st_size)
            scored = "test" if "test" in counts else "val"
            sizes[name] = (counts.get("train", 0), counts.get(scored, 0))
        elif not demo and name in OFFICIAL_SIZES:
            sizes[name] = OFFICIAL_SIZES[name]
    return sizes


def _size(sizes: Mapping[str, tuple[int, int]], name: str, which: int) -> int:
    if name not in sizes:
        raise PlanError(
            f"size of dataset {name!r} unknown: prepare it first (snakemake "
            f"results/data/{name} with the same config files), then plan again"
        )
    return sizes[name][which]


def plan_jobs(
    jobs: Sequence[tuple[str, Mapping[str, str]]],
    config: Mapping[str, Any],
    sizes: Mapping[str, tuple[int, int]],
) -> list[PlannedJob]:
    """Count the images each training or evaluation job processes.

    Args:
        jobs: (rule, wildcards) of every job (see :func:`dry_run_jobs`).
        config: The merged config the jobs were planned with.
        sizes: (training, scored) set sizes by dataset (see :func:`set_sizes`).

    Returns:
        The jobs that train or evaluate, in the given order; other jobs (data, tables,
        figures) cost no GPU time and are left out.

    Raises:
        PlanError: A needed dataset's size is unknown.
    """
    repeats = int(config["evaluation"]["repeats"])
    training = config["training"]
    planned = []
    for rule, wildcards in jobs:
        job = PlannedJob(rule, dict(wildcards))
        # One job per seed (its {seed} wildcard) or one for every seed (jobs.seeds_per_job).
        job_seeds = [int(wildcards["seed"])] if "seed" in wildcards else list(config["seeds"])
        seeds = len(job_seeds)
        who = f"seed {job_seeds[0]}" if "seed" in wildcards else f"x{seeds} seeds"
        if rule == "pretrain_backbone":
            pre = config["backbones"][wildcards["backbone"]]["pretrain"]
            # The miniature's stand-in teachers train on their own corpus (data.pretrain_corpus).
            data = "pretrain_corpus" if "pretrain_corpus" in config["data"] else "imagenet100"
            job.train_images = int(pre["epochs"]) * _size(sizes, data, 0)
            job.eval_images = _size(sizes, data, 1)
            job.runs.append(f"{data} x{pre['epochs']} ep")
        elif rule in ("distill", "distill_ci"):
            cfg = training["distill" if rule == "distill" else "contrastive_inversion"]
            job.train_images = seeds * int(cfg["epochs"]) * _size(sizes, "imagenet100", 0)
            job.runs.append(f"imagenet100 x{cfg['epochs']} ep {who}")
        elif rule in _FINETUNE_KINDS:
            epochs = int(training["finetune"]["epochs"])
            floor = fraction_min_steps(config) if rule == "finetune_fractions" else 0
            batch = int(training["finetune"].get("batch_size", 1)) if floor else 1
            job_runs = finetune_runs(config, _FINETUNE_KINDS[rule], job_seeds)
            run_epochs = {}
            for data, fraction, _seed in job_runs:
                kept = max(1, round(float(fraction) * _size(sizes, data, 0)))
                run_epochs[data, fraction] = fraction_run_epochs(kept, batch, epochs, floor)
                job.train_images += run_epochs[data, fraction] * kept
                job.eval_images += repeats * _size(sizes, data, 1)
            job.runs += [f"{d} frac {f} x{e} ep {who}" for (d, f), e in run_epochs.items()]
        elif rule == "evaluate_ladder":
            try:  # Fig 2's ladder or Table 4's test settings, with the training one
                tests = len(evaluation_tests(config, wildcards.get("distortion", "")))
            except KeyError:
                tests = 1
            seeds = len(config["seeds"])  # one ladder job evaluates every seed
            job.eval_images = seeds * tests * repeats * _size(sizes, "imagenet100", 1)
            job.runs.append(f"imagenet100 {tests} distortions x{repeats} repeats x{seeds} seeds")
        elif rule == "evaluate_corruptions":
            exp = config["experiments"]["corruptions"]
            tests = len(exp["corruptions"]) * len(exp["severities"])
            job.eval_images = seeds * tests * _size(sizes, "imagenet100", 1)
            job.runs.append(f"imagenet100 {tests} corruption settings x{seeds} seeds")
        elif rule in ("craft_teacher", "craft_student"):
            part = config["craft"]["teacher" if rule == "craft_teacher" else "student"]
            teacher = rule == "craft_teacher"  # one teacher, trained once
            epochs = int(part["train"]["epochs"])
            job.train_images = (1 if teacher else seeds) * epochs * _size(sizes, "cifar10", 0)
            job.runs.append(f"cifar10 x{epochs} ep {'x1 seeds' if teacher else who}")
        else:
            continue
        planned.append(job)
    return planned


def makespan(hours: Sequence[float], gpus: int) -> float:
    """Hours until the last job ends: longest first, each on the least-loaded of ``gpus``."""
    if gpus < 1:
        raise PlanError(f"--gpus must be at least 1, got {gpus}")
    load = [0.0] * gpus
    for h in sorted(hours, reverse=True):
        heapq.heapreplace(load, load[0] + h)
    return max(load)


def format_plan(
    planned: Sequence[PlannedJob],
    throughput: Mapping[str, float],
    gpus: int,
    sources: Mapping[str, str] | None = None,
) -> list[str]:
    """The plan as text lines: its throughputs and their sources, one line per job, totals.

    Args:
        planned: The jobs (:func:`plan_jobs`).
        throughput: Images/s per GPU by rule kind (``evaluate`` for evaluation).
        gpus: GPUs of the wall-time estimate.
        sources: Where each rate came from (:attr:`Throughputs.sources`); without it a rate
            equal to the default is called assumed and any other given.

    Returns:
        The lines; the last one holds the totals.
    """
    lines = throughput_lines(planned, throughput, sources)
    lines.append(
        f"{'rule':20s} {'job':34s} {'train img':>14s} {'eval img':>12s} {'GPU-h':>9s}  work"
    )
    by_rule: dict[str, list[float]] = {}
    order = {rule: i for i, rule in enumerate(dict.fromkeys(j.rule for j in planned))}
    for job in sorted(planned, key=lambda j: (order[j.rule], list(j.wildcards.values()))):
        name = ",".join(f"{v}" for v in job.wildcards.values()) or "-"
        h = job.gpu_hours(throughput)
        by_rule.setdefault(job.rule, []).append(h)
        lines.append(
            f"{job.rule:20s} {name[:34]:34s} {job.train_images:14,d} {job.eval_images:12,d} "
            f"{h:9.2f}  {'; '.join(job.runs)}"
        )
    lines.append("")
    for rule, hours in by_rule.items():
        rate = throughput.get(rule, throughput["evaluate"])  # evaluation-only jobs
        lines.append(
            f"{rule:20s} {len(hours):4d} jobs {sum(hours):10.2f} GPU-h  at {rate:,.0f} img/s"
        )
    total = [h for hours in by_rule.values() for h in hours]
    lines.append(
        f"total: {len(total)} jobs, {sum(total):.1f} GPU-h; wall time on {gpus} GPU(s) "
        f"at least {makespan(total, gpus):.1f} h (evaluation at {throughput['evaluate']:,.0f} "
        "img/s)"
    )
    return lines


def throughput_lines(
    planned: Sequence[PlannedJob],
    throughput: Mapping[str, float],
    sources: Mapping[str, str] | None = None,
) -> list[str]:
    """Which throughput each rule kind of the plan uses, and whether it is assumed or measured.

    One line per rule kind with jobs in the plan (and ``evaluate`` when a job evaluates), then
    a blank line.
    """
    kinds = list(dict.fromkeys(j.rule for j in planned if j.train_images))
    if any(j.eval_images for j in planned):
        kinds.append("evaluate")
    if sources is None:
        sources = {
            k: ASSUMED if throughput[k] == DEFAULT_THROUGHPUT.get(k) else GIVEN for k in throughput
        }
    lines = ["throughputs (images/s per GPU):"]
    for kind in kinds:
        source = sources.get(kind, ASSUMED)
        if source == ASSUMED:
            source = "assumed (robustkd.plan.DEFAULT_THROUGHPUT), not measured"
        lines.append(f"  {kind:20s} {throughput[kind]:10,.0f}  {source}")
    counts = Counter(sources.get(k, ASSUMED) == ASSUMED for k in kinds)
    lines.append(f"  ({counts[True]} assumed, {counts[False]} measured or given)")
    lines.append("")
    return lines
