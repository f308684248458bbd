# Snakemake adapter: train, evaluate and save the CRAFT study's teacher (rule craft_teacher).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.distributed import run_job
from robustkd.joblog import configure_job_logging
from robustkd.triggers import with_operational

configure_job_logging(snakemake.log[0])
# More than one GPU (resource gpu or a gpu gres): torchrun, one process per GPU.
run_job(
    "robustkd.craft.teacher_job:teacher_job",
    {
        "data_dir": snakemake.input.data,
        # checkpoint_every, log_every: not params (no rerun), from the config.
        "craft": with_operational(snakemake.params.craft, snakemake.config, "craft"),
        "cifar10c": snakemake.params.cifar10c,
        "cifar10c_labels": snakemake.input.labels,
        "out_weights": snakemake.output.weights,
        "out_metrics": snakemake.output.metrics,
        "threads": snakemake.threads,
        "rule": snakemake.rule,
    },
    name="craft_teacher",
    resources=snakemake.resources,
    log_file=snakemake.log[0],
)
