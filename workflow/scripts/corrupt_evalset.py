# Snakemake adapter: the corrupted evaluation set of the Table 1 models (rule corrupt_evalset).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.corrupted import corrupt_evalset_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
exp = snakemake.params.exp
corrupt_evalset_job(
    data_dir=snakemake.input.data,
    size=int(snakemake.wildcards.size),
    protocol=exp["protocol"],
    corruptions=list(exp["corruptions"]),
    severities=exp["severities"],
    seed=exp["seed"],
    chunk=exp["chunk"],
    outputs=snakemake.params.corrupted,
    labels_out=snakemake.output.labels,
    preload_size=snakemake.params.preload_size,
    threads=snakemake.threads,
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards),
)
