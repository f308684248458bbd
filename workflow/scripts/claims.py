# Snakemake adapter: the main paper's claims with a verdict each (rule claims), and their
# provenance (claim -> metrics files of every seed) that `robustkd audit` walks.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from robustkd.joblog import configure_job_logging
from robustkd.report.claims import build_claims_table, paper_claims

configure_job_logging(snakemake.log[0])
config = snakemake.params.config
build_claims_table(
    paper_claims(config),
    Path(snakemake.output.csv).with_suffix(""),
    provenance={
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
        "config": {
            "experiments": config["experiments"],
            "seeds": config["seeds"],
        },
    },
)
