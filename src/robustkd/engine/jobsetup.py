"""What every job does around its work: seeding, CPU threads, its run folders, provenance."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from robustkd.engine.runlock import hold_run_folders
from robustkd.provenance import RECORD, write_provenance

__all__ = ["holds_run_folders", "seed_everything", "set_threads", "write_run_provenance"]

Job = TypeVar("Job", bound=Callable[..., Any])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> int:
    """Use ``threads`` for intra-op parallelism; return the data-loader worker count."""
    torch.set_num_threads(max(1, threads))
    return 0 if threads <= 2 else threads - 1


def holds_run_folders(
    folders: Callable[[Mapping[str, Any]], Iterable[str | os.PathLike[str]]],
) -> Callable[[Job], Job]:
    """Make a training job hold its run folders for its whole call, before it loads anything.

    A second job writing any of them then stops at once (:mod:`robustkd.engine.runlock`); the
    folders are released when the job returns or raises.

    Args:
        folders: The job's run folders, from the keyword arguments it is called with (jobs take
            keyword arguments only).

    Returns:
        A decorator of the job function.
    """

    def decorate(job: Job) -> Job:
        @functools.wraps(job)
        def held(**kwargs: Any) -> Any:
            with hold_run_folders(folders(kwargs)):
                return job(**kwargs)

        return cast(Job, held)

    return decorate


def write_run_provenance(
    run_dir: Path,
    *,
    rule: str,
    inputs: Sequence[str | os.PathLike[str]],
    outputs: Sequence[Path],
    wildcards: Mapping[str, Any],
    config: Mapping[str, Any],
    seed: int | None,
    started: str,
    device: torch.device,
    extra: Mapping[str, Any],
    record: str | os.PathLike[str] | None = None,
) -> None:
    """Write the job's record (:func:`robustkd.provenance.write_provenance`).

    ``record`` is the path the job's rule declares for it (one per job, never shared:
    ``tests/test_dag_paths.py``); default ``run_dir/provenance.json``, a run folder's record.
    """
    write_provenance(
        Path(record) if record is not None else run_dir / RECORD,
        rule=rule,
        inputs=inputs,
        outputs=outputs,
        wildcards=wildcards,
        config=config,
        seed=seed,
        started=started,
        device=str(device),
        extra=extra,
    )
