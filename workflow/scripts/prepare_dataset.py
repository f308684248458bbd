# Snakemake adapter: prepare one dataset (rules prepare_<dataset> in workflow/rules/data.smk).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.data.jobs import prepare_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
prepare_job(
    snakemake.params.dataset,
    snakemake.params.source,
    snakemake.output[0],
    download=snakemake.params.download,
    rule=snakemake.rule,
    config_key=snakemake.params.get("config_key"),
)
