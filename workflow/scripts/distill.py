# Snakemake adapter: distil one student per seed (rule distill).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.distributed import run_job
from robustkd.joblog import configure_job_logging
from robustkd.triggers import with_operational

configure_job_logging(snakemake.log[0])
# More than one GPU (resource gpu or a gpu gres): torchrun, one process per GPU.
run_job(
    "robustkd.engine.jobs:distill_job",
    {
        "method": snakemake.params.method,
        "backbone": snakemake.params.backbone,
        "loss_weights": snakemake.params.loss,
        "distortion": snakemake.params.distortion,
        # checkpoint_every, log_every: not params (no rerun), from the config.
        "train_cfg": with_operational(
            snakemake.params.train, snakemake.config, snakemake.params.settings_key
        ),
        "data_dir": snakemake.input.data,
        "views": snakemake.params.views,
        "seeds": snakemake.params.seeds,
        "outputs": snakemake.output.students,
        "threads": snakemake.threads,
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
        "teachers": snakemake.params.teachers,
        "inputs": list(snakemake.input.teacher),
    },
    name="distill",
    resources=snakemake.resources,
    log_file=snakemake.log[0],
)
