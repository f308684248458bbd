# Snakemake adapter: the CRAFT table and figures (rule craft_report).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from robustkd.craft.report import report_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
report_job(snakemake.params.config, rule=snakemake.rule)
