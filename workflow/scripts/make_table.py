# Snakemake adapter: build one table from its metrics files (rule make_table).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from robustkd.joblog import configure_job_logging
from robustkd.layout import table_cells, table_spec
from robustkd.report.tables import build_table

configure_job_logging(snakemake.log[0])
name = snakemake.wildcards.table
config = snakemake.params.config
build_table(table_spec(config, name), table_cells(config, name), f"results/tables/{name}")
