"""Images per second per GPU by rule kind: the assumed defaults, measured ones, given ones.

``robustkd plan`` (:mod:`robustkd.plan`) turns images into GPU-hours with these rates, and the
workflow derives its jobs' time limits from them (:mod:`robustkd.timelimit`). The defaults
(:data:`DEFAULT_THROUGHPUT`) are **assumed**; :func:`read_measured` reads measured ones from the
record of ``make gpu-check`` or from a previous run's provenance records; ``--throughput``
items win over both (:func:`resolve_throughput`).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustkd.errors import PlanError

__all__ = [
    "ASSUMED",
    "DEFAULT_THROUGHPUT",
    "GIVEN",
    "Throughputs",
    "parse_throughput",
    "read_measured",
    "resolve_throughput",
]

# Images per second per GPU, assumed for ViT-B/16 at 224 px in bf16 on one current datacenter
# GPU (issue 16: a distillation step at roughly 1,500-2,000 img/s), CLIP RN101 similar, the
# CIFAR ResNets far faster. Evaluation is forward only. Replace them with measured values.
DEFAULT_THROUGHPUT: dict[str, float] = {
    "pretrain_backbone": 2500.0,
    "distill": 1700.0,
    "distill_ci": 1700.0,
    "finetune": 2500.0,
    "finetune_fractions": 2500.0,
    "transfer": 2500.0,
    "craft_teacher": 20000.0,
    "craft_student": 15000.0,
    "evaluate": 6000.0,
}

# Where a throughput came from (Throughputs.sources); measured ones say "measured: <what>".
ASSUMED = "assumed"
GIVEN = "given (--throughput)"


@dataclass
class Throughputs:
    """Images/s per GPU by rule kind, with where each came from.

    Attributes:
        rates: Images/s per GPU by rule kind (every kind of :data:`DEFAULT_THROUGHPUT`).
        sources: ``"assumed"`` (the default), ``"given (--throughput)"`` or ``"measured: ..."``
            naming the file and what in it, by rule kind.
    """

    rates: dict[str, float]
    sources: dict[str, str]


def parse_throughput(items: Sequence[str]) -> dict[str, float]:
    """``["distill=1800", ...]`` over the defaults.

    Raises:
        PlanError: An item is not ``RULE=IMAGES_PER_S`` with a known rule and a positive number.
    """
    return resolve_throughput(items).rates


def resolve_throughput(
    items: Sequence[str] = (), measured: Sequence[str | os.PathLike[str]] = ()
) -> Throughputs:
    """The plan's throughputs: defaults, then measured files in order, then ``items``.

    Args:
        items: ``RULE=IMAGES_PER_S`` given on the command line (win over everything).
        measured: Files or folders to read measured throughputs from (:func:`read_measured`);
            a later one wins over an earlier one for the same rule kind.

    Returns:
        Every rule kind's rate and its source.

    Raises:
        PlanError: A bad item, or a measured file that cannot be read or holds no throughput.
    """
    rates = dict(DEFAULT_THROUGHPUT)
    sources = dict.fromkeys(rates, ASSUMED)
    for path in measured:
        for rule, (rate, what) in read_measured(path).items():
            rates[rule], sources[rule] = rate, f"measured: {what}"
    for item in items:
        rule, _, value = item.partition("=")
        if rule not in rates:
            raise PlanError(f"--throughput {item!r}: unknown rule kind (known: {sorted(rates)})")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not rate > 0:
            raise PlanError(f"--throughput {item!r}: give a positive number of images/s")
        rates[rule], sources[rule] = rate, GIVEN
    return Throughputs(rates, sources)


def read_measured(path: str | os.PathLike[str]) -> dict[str, tuple[float, str]]:
    """Measured images/s per GPU by rule kind, from a file or folder, with what each came from.

    Three kinds of input:

    - the JSON-lines record of ``make gpu-check`` (``benchmarks/gpu_check.py``): each step that
      measured a rule kind's throughput holds ``result.plan_throughput`` (``{"distill": 2412.0}``,
      the figure of what the config runs: its precision and compile setting);
    - a job's ``provenance.json`` holding ``rule`` and ``train.images_per_s`` (a training job of
      a previous run: its images over its wall time, start-up, checkpoints and loader included);
    - a folder: every such provenance record below it (``results/``); per rule kind, the median
      over its runs.

    The step log ``log.jsonl`` of a run holds loss components per step, no images/s: give the
    run's ``provenance.json`` (beside it) instead.

    Args:
        path: The file or folder.

    Returns:
        ``{rule: (images_per_s, description)}`` for the rule kinds of
        :data:`DEFAULT_THROUGHPUT` found; the description names the file, the device and how
        many runs.

    Raises:
        PlanError: The path is missing or unreadable, or holds no throughput of a known rule
            kind.
    """
    p = Path(path)
    if p.is_dir():
        found = _measured_runs(sorted(p.rglob("*provenance.json")))
        if not found:
            raise PlanError(
                f"--measured {p}: no provenance record of a training job below it (a "
                "provenance.json with 'rule' and 'train.images_per_s')"
            )
        return {
            rule: (statistics.median(r for r, _ in runs), _runs_text(p, runs))
            for rule, runs in found.items()
        }
    try:
        text = p.read_text()
    except OSError as exc:
        raise PlanError(f"--measured {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):  # one provenance record
        found = _measured_runs([p], texts={p: whole})
        if not found and "step" in whole and "rule" not in whole:
            raise PlanError(
                f"--measured {p}: a run's step log (log.jsonl: loss components per step) holds "
                "no images/s; give the run's provenance.json beside it, or its folder"
            )
        if not found:
            raise PlanError(
                f"--measured {p}: a JSON object without 'rule' (a known rule kind) and "
                "'train.images_per_s': not a training job's provenance record"
            )
        return {rule: (runs[0][0], _runs_text(p, runs)) for rule, runs in found.items()}
    return _measured_check_record(p, text)


def _measured_runs(
    paths: Sequence[Path], texts: Mapping[Path, Any] | None = None
) -> dict[str, list[tuple[float, str]]]:
    """(images/s, device) of each training run's provenance record, by rule kind."""
    runs: dict[str, list[tuple[float, str]]] = {}
    for path in paths:
        record = (texts or {}).get(path)
        if record is None:
            try:
                record = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # not ours to judge here: robustkd audit names broken records
        if not isinstance(record, dict) or record.get("rule") not in DEFAULT_THROUGHPUT:
            continue
        train = record.get("train")
        rate = train.get("images_per_s") if isinstance(train, dict) else None
        if isinstance(rate, int | float) and rate > 0:
            runs.setdefault(record["rule"], []).append((float(rate), str(record.get("device"))))
    return runs


def _runs_text(path: Path, runs: Sequence[tuple[float, str]]) -> str:
    devices = ", ".join(sorted({d for _, d in runs}))
    n = len(runs)
    what = "1 run" if n == 1 else f"median of {n} runs"
    return f"{path} ({what}, device {devices})"


def _measured_check_record(path: Path, text: str) -> dict[str, tuple[float, str]]:
    """The throughputs of a ``make gpu-check`` record (JSON lines)."""
    header: dict[str, Any] = {}
    out: dict[str, tuple[float, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise PlanError(
                f"--measured {path}, line {number}: not JSON; give the JSON-lines record of "
                "make gpu-check, a provenance.json or a folder of them"
            ) from None
        if not isinstance(entry, dict):
            continue
        if entry.get("kind") == "header":
            header = entry
        result = entry.get("result")
        rates = result.get("plan_throughput") if isinstance(result, dict) else None
        if entry.get("status") != "ok" or not isinstance(rates, dict):
            continue
        device = result.get("device") or header.get("device") or "unknown device"
        mode = f", {header['mode']} mode" if header.get("mode") else ""
        model = f" {result['model']} batch {result.get('batch')}," if result.get("model") else ""
        for rule, rate in rates.items():
            if rule in DEFAULT_THROUGHPUT and isinstance(rate, int | float) and rate > 0:
                what = f"{path} (gpu_check step {entry.get('step')}:{model} {device}{mode})"
                out[rule] = (float(rate), what)
    if not out:
        raise PlanError(
            f"--measured {path}: no throughput of a rule kind in it (a gpu_check record's steps "
            "hold result.plan_throughput; a training job's provenance.json holds "
            "train.images_per_s; a run's step log log.jsonl holds neither: give its "
            "provenance.json)"
        )
    return out
