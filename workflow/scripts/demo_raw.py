# Snakemake adapter: write one dataset's miniature raw data (rule demo_raw).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

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
