"""A job's GPU request: how the workflow asks SLURM (or Snakemake) for GPUs, and how many it got.

A job asks for GPUs in exactly one way, given in the executor profile (``profiles/slurm``,
``profiles/local``), never by the rules themselves:

- the standard resource ``gpu: N`` (the SLURM executor plugin passes ``--gpus=N``, or
  ``--gpus=<gpu_model>:N`` with ``gpu_model``), or
- ``gres: "gpu[:type][:N]"`` (passed as ``--gres=...``), for clusters that need it.

A training job runs one process per GPU requested (:func:`robustkd.engine.distributed.run_job`).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from robustkd.errors import ConfigError

__all__ = ["check_gpu_requests", "gpu_processes", "requested_gpus", "stated_requests"]


def _gres_gpus(gres: str) -> int:
    """GPUs in a SLURM ``--gres`` value: ``gpu`` 1, ``gpu:2`` 2, ``gpu:a100`` 1, ``gpu:a100:2`` 2.

    A value may list several resources separated by commas; those not named ``gpu`` count 0.
    """
    total = 0
    for item in str(gres).split(","):
        name, *rest = item.strip().split(":")
        if name != "gpu":
            continue
        total += int(rest[-1]) if rest and rest[-1].isdigit() else 1
    return total


def gpu_processes(resources: Any, rule: str = "the job") -> int:
    """Number of training processes of a job: one per GPU it asked for, at least one.

    Args:
        resources: The job's resources, as for :func:`requested_gpus`.
        rule: The rule's name, for the error message.

    Returns:
        :func:`requested_gpus`, or 1 for a job without GPUs.

    Raises:
        ConfigError: As :func:`requested_gpus`.
    """
    return max(1, requested_gpus(resources, rule))


def requested_gpus(resources: Any, rule: str = "the job") -> int:
    """GPUs a job asked SLURM (or Snakemake) for; 0 when none.

    A job asks for GPUs in exactly one way: the standard resource ``gpu: N`` (sbatch
    ``--gpus=N``, or ``--gpus=<gpu_model>:N``), or ``gres: "gpu[:type][:N]"`` (sbatch
    ``--gres``). Both at once would reach sbatch as two requests, so it is refused.

    Args:
        resources: The job's resources (``snakemake.resources`` or a mapping); read with
            ``.get("gpu")`` and ``.get("gres")``.
        rule: The rule's name, for the error message.

    Returns:
        N from ``gpu: N`` or from a ``gpu`` gres; 0 for a job without GPUs.

    Raises:
        ConfigError: Both ``gpu`` and a ``gpu`` gres are given, or ``gpu`` is not a whole number.
    """
    gpu, gres = resources.get("gpu"), resources.get("gres")
    try:
        n_gpu = int(gpu or 0)
    except (TypeError, ValueError):
        raise ConfigError(f"{rule}: resource gpu={gpu!r} is not a whole number of GPUs") from None
    n_gres = _gres_gpus(gres) if gres else 0
    if n_gpu and n_gres:
        raise ConfigError(
            f"{rule}: GPUs requested twice, gpu={gpu} and gres={gres!r} (sbatch would get both "
            f"--gpus and --gres): keep one of them in your profile's set-resources for {rule} "
            "(or in --set-resources on the command line)"
        )
    return max(n_gpu, n_gres)


def check_gpu_requests(
    default: Mapping[str, Any] | None, per_rule: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Check before any job starts that no rule asks for GPUs twice.

    Args:
        default: The default resources (``default-resources`` of the profiles).
        per_rule: Rule name -> resources set for it (``set-resources``).

    Raises:
        ConfigError: A rule would get both ``gpu`` and a ``gpu`` gres (the message names it).
    """
    default = dict(default or {})
    for rule, resources in (per_rule or {}).items():
        gpu_processes({**default, **dict(resources)}, rule)
    gpu_processes(default, "default-resources")


def _literal(text: str) -> Any:
    """A resource's text as Snakemake evaluates it: a Python literal, else the text itself."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text.strip()


def stated_requests(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The GPU requests (``gpu``, ``gres``) of a profile or the command line as plain values.

    Snakemake keeps a resource it cannot take as a number as an expression to evaluate per job:
    a profile's ``gres: "gpu:a100:2"`` (YAML has taken the quotes) as the text ``gpu:a100:2``,
    the command line's ``gres="gpu:a100:2"`` as the text with its quotes, which the job's
    evaluation removes. Here both become ``gpu:a100:2``, as sbatch gets them. An expression
    that is no literal (a function of the job) cannot be counted before the job and is left
    out, as are the other resources.

    Args:
        resources: Resource name -> value: Snakemake's ``Resource`` objects (``.raw``,
            ``.is_evaluable()``, ``.value``) or plain values.

    Returns:
        ``gpu`` and ``gres`` where given, as plain values.
    """
    out = {}
    for key, value in dict(resources or {}).items():
        if key not in ("gpu", "gres"):
            continue
        if hasattr(value, "is_evaluable"):
            raw = getattr(value, "raw", None)
            if not value.is_evaluable():
                value = value.value
            elif isinstance(raw, str):
                value = _literal(raw)
                if key == "gres" and not isinstance(value, str):
                    continue
                if key == "gpu" and not (
                    isinstance(value, int) or (isinstance(value, str) and value.isdigit())
                ):
                    continue
            else:
                continue
        out[key] = value
    return out
