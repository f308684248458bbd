# Snakemake adapter: the corruption table and figure (rule corruption_report).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.layout import CORRUPTION_FIGURE, CORRUPTION_TABLE
from robustkd.provenance import now_iso
from robustkd.report.corruptions import (
    build_corruption_table,
    plot_corruptions,
    write_figure_provenance,
)

configure_job_logging(snakemake.log[0])
started = now_iso()
models = [tuple(m) for m in snakemake.params.models]
exp = snakemake.params.exp
methods = list(snakemake.params.methods)
fields = {"rule": snakemake.rule, "config": {"experiments.corruptions": dict(exp)}}
build_corruption_table(
    models,
    CORRUPTION_TABLE,
    baseline=exp["baseline"],
    methods=methods,
    provenance=fields,
    corruptions=exp["corruptions"],
    severities=exp["severities"],
)
plot_corruptions(models, CORRUPTION_FIGURE, methods=methods)
write_figure_provenance(models, CORRUPTION_FIGURE, started=started, **fields)
