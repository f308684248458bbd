# Snakemake adapter: prepare one dataset (rules prepare_<dataset> in workflow/rules/data.smk).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

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
