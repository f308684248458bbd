# Snakemake adapter: evaluate one method's classifiers at Fig 2's severities (evaluate_ladder).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.ladder import ladder_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
ladder_job(
    backbone=snakemake.params.backbone,
    models=list(snakemake.input.models),
    seeds=snakemake.params.seeds,
    data_dir=snakemake.input.data,
    tests=snakemake.params.tests,
    evaluation=snakemake.params.evaluation,
    views=snakemake.params.views,
    out=snakemake.output[0],
    record_file=snakemake.output.record,
    threads=snakemake.threads,
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards),
)
