# Snakemake adapter: the CRAFT table and figures (rule craft_report).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.craft.report.job import report_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
report_job(snakemake.params.config, rule=snakemake.rule)
