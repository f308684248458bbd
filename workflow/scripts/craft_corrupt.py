# Snakemake adapter: the CIFAR-10-C style copy of the test set (rule craft_corrupt_testset).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.craft.jobs import corrupt_testset_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
corrupt_testset_job(
    data_dir=snakemake.input.data,
    corruptions=list(snakemake.params.corruptions),
    severities=snakemake.params.severities,
    seed=snakemake.params.seed,
    outputs=snakemake.params.corruptions,
    labels_out=snakemake.output.labels,
    threads=snakemake.threads,
    rule=snakemake.rule,
)
