# Snakemake adapter: train and evaluate one method's students, every seed (rule craft_student).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.distributed import run_job
from robustkd.joblog import configure_job_logging
from robustkd.triggers import with_operational

configure_job_logging(snakemake.log[0])
# More than one GPU (resource gpu or a gpu gres): torchrun, one process per GPU.
run_job(
    "robustkd.craft.student_job:student_job",
    {
        "method": snakemake.wildcards.craft_method,
        "data_dir": snakemake.input.data,
        "teacher_weights": snakemake.input.teacher,
        # checkpoint_every, log_every: not params (no rerun), from the config.
        "craft": with_operational(snakemake.params.craft, snakemake.config, "craft"),
        "seeds": snakemake.params.seeds,
        "outputs": snakemake.output.students,
        "eval_conditions": snakemake.params.conditions,
        "cifar10c": snakemake.params.cifar10c,
        "cifar10c_labels": snakemake.input.labels,
        "threads": snakemake.threads,
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
    },
    name="craft_student",
    resources=snakemake.resources,
    log_file=snakemake.log[0],
)
