# Snakemake adapter: the report's page of a table's provenance (rule provenance_page): every cell
# of <table>.provenance.json with each seed's value, metrics file and sha256, as
# results/report/provenance/<table>.html, and the job's record beside it.
import json
from pathlib import Path

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.atomic import atomic_write_text
from robustkd.joblog import configure_job_logging
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.pages import provenance_html

configure_job_logging(snakemake.log[0])
started = now_iso()
source = snakemake.input.source
page = Path(snakemake.output.page)
with open(source) as f:
    record = json.load(f)
atomic_write_text(page, provenance_html(record, snakemake.params.table_file))
write_provenance(
    snakemake.output.record,
    rule=snakemake.rule,
    inputs=[source],
    outputs=[page],
    wildcards=dict(snakemake.wildcards),
    started=started,
)
