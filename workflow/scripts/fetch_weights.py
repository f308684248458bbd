# Snakemake adapter: download a hub backbone's pretrained weights once (rule fetch_weights).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.models.fetch import fetch_weights_job

configure_job_logging(snakemake.log[0])
fetch_weights_job(
    backbone=snakemake.wildcards.backbone,
    spec=snakemake.params.backbone,
    out=snakemake.output.weights,
    record=snakemake.output.record,
    rule=snakemake.rule,
)
