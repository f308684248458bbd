# Snakemake adapter: draw Fig 2 or Fig 3 from its metrics files (rule make_figure).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.figures import plot_label_fractions, plot_severity_curves
from robustkd.report.paper import fig2_frame, fig3_frame

configure_job_logging(snakemake.log[0])
started = now_iso()
name = snakemake.wildcards.figure
config = snakemake.params.config
prefix = f"results/figures/{name}"
if name == "fig2":
    plot_severity_curves(fig2_frame(config), prefix)
else:
    plot_label_fractions(fig3_frame(config), prefix)
write_provenance(
    snakemake.output.prov,
    rule=snakemake.rule,
    inputs=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf, snakemake.output.csv],
    wildcards=dict(snakemake.wildcards),
    config={f"experiments.{name}": config["experiments"][name], "seeds": config["seeds"]},
    started=started,
)
