# Snakemake adapter: write one dataset's miniature raw data (rule demo_raw).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.data.jobs import demo_raw_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
demo_raw_job(
    snakemake.wildcards.dataset,
    snakemake.output[0],
    seed=snakemake.params.seed,
    spec=snakemake.params.spec,
    rule=snakemake.rule,
)
