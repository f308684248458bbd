# Snakemake adapter: the main paper's claims with a verdict each (rule claims), and their
# provenance (claim -> metrics files of every seed) that `robustkd audit` walks.
from pathlib import Path

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.report.claims import build_claims_table, paper_claims

configure_job_logging(snakemake.log[0])
config = snakemake.params.config
build_claims_table(
    paper_claims(config),
    Path(snakemake.output.csv).with_suffix(""),
    decision=config["claims"],
    provenance={
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
        "config": {
            "experiments": config["experiments"],
            "seeds": config["seeds"],
            "claims": config["claims"],
        },
    },
)
