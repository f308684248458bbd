# Snakemake adapter: one method's Table 1 classifiers on every corruption (evaluate_corruptions).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.corrupted import corruption_eval_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
corruption_eval_job(
    backbone=snakemake.params.backbone,
    models=list(snakemake.input.models),
    seeds=snakemake.params.seeds,
    data_dir=snakemake.input.data,
    corrupted=snakemake.params.corrupted,
    labels=snakemake.input.labels,
    severities=snakemake.params.severities,
    evaluation=snakemake.params.evaluation,
    views=snakemake.params.views,
    out=snakemake.output[0],
    record_file=snakemake.output.record,
    threads=snakemake.threads,
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards),
)
