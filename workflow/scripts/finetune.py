# Snakemake adapter: fine-tune and evaluate every run of one job (rules finetune,
# finetune_fractions, transfer).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.distributed import run_job
from robustkd.engine.jobs import FinetuneRun
from robustkd.joblog import configure_job_logging
from robustkd.triggers import with_operational

configure_job_logging(snakemake.log[0])
# More than one GPU (resource gpu or a gpu gres): torchrun, one process per GPU.
run_job(
    "robustkd.engine.jobs:finetune_job",
    {
        "backbone": snakemake.params.backbone,
        "runs": [FinetuneRun(**run) for run in snakemake.params.runs],
        "distortion": snakemake.params.distortion,
        # checkpoint_every, log_every: not params (no rerun), from the config.
        "train_cfg": with_operational(
            snakemake.params.train, snakemake.config, snakemake.params.settings_key
        ),
        "evaluation": snakemake.params.evaluation,
        "views": snakemake.params.views,
        "threads": snakemake.threads,
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
    },
    name="finetune",
    resources=snakemake.resources,
    log_file=snakemake.log[0],
)
