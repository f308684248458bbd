"""A training or evaluation job's time limit (its ``runtime``, sbatch ``-t``), from its plan.

A scheduler starts a job early when its limit fits a gap in the queue (backfill), so a limit
far above what the job needs makes it wait longer. The limit here is what ``robustkd plan``
estimates for the job at the plan's assumed throughput (:data:`robustkd.plan.
DEFAULT_THROUGHPUT`, one GPU), times :data:`MARGIN`, plus :data:`OVERHEAD`, at least
:data:`FLOOR`; each retry of a job asks for one more such limit (attempt 2: twice, attempt 3:
three times), and a training job resumes from its last checkpoint, so a limit that was too
short costs one checkpoint interval, not the run.

At paper scale (config/config.yaml, its official set sizes) the plan gives: distill and
distill_ci 0.52 GPU-h per seed -> 109 min; transfer 0.53 -> 111 min; finetune 0.14,
finetune_fractions 0.11, craft_teacher 0.14, craft_student 0.19 and the evaluations (at most
0.06) -> the floor, 60 min. Where you measured a slower GPU, or a set's size is unknown until
it is prepared (:data:`UNPLANNED`), give ``runtime`` in the profile's ``set-resources``: it
replaces this one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from robustkd.plan import DEFAULT_THROUGHPUT, PlanError, plan_jobs

__all__ = ["FLOOR", "MARGIN", "OVERHEAD", "UNPLANNED", "job_runtime"]

# The plan's throughputs are assumed for one current datacenter GPU (A100/H100 class, bf16):
# 3x leaves room for a GPU a generation older or a slower data pipeline.
MARGIN = 3.0
# Minutes for what the plan does not count: imports, loading the data and models, checkpoints,
# writing outputs.
OVERHEAD = 15
# Minutes: no job asks for less (small jobs would otherwise be killed by a slow start).
FLOOR = 60
# Minutes when the plan cannot be made (a dataset of the miniature not prepared yet).
UNPLANNED = 1440


def job_runtime(
    rule: str,
    wildcards: Mapping[str, Any],
    config: Mapping[str, Any],
    sizes: Mapping[str, tuple[int, int]],
    attempt: int = 1,
    throughput: Mapping[str, float] = DEFAULT_THROUGHPUT,
) -> int:
    """Minutes a job may run: ``max(FLOOR, OVERHEAD + MARGIN x planned time) x attempt``.

    Args:
        rule: The job's rule (a training or evaluation rule of :func:`robustkd.plan.plan_jobs`).
        wildcards: Its wildcards.
        config: The merged config.
        sizes: Set sizes (:func:`robustkd.plan.set_sizes`).
        attempt: Snakemake's attempt (1, then 2, ... on retries).
        throughput: Images/s per GPU by rule kind.

    Returns:
        Whole minutes; :data:`UNPLANNED` (times ``attempt``) when a set's size is unknown or
        the rule is not one the plan counts.
    """
    attempt = max(1, int(attempt))
    try:
        planned = plan_jobs([(rule, {str(k): str(v) for k, v in wildcards.items()})], config, sizes)
    except PlanError:
        planned = []
    if not planned:
        return UNPLANNED * attempt
    minutes = OVERHEAD + MARGIN * 60.0 * planned[0].gpu_hours(throughput)
    return max(FLOOR, math.ceil(minutes)) * attempt
