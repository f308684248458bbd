# Snakemake adapter: draw Fig 4's attention maps (rule make_fig4) from rule attention_maps' file.

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.figures import plot_attention_maps
from robustkd.report.paper import fig4_panels

configure_job_logging(snakemake.log[0])
started = now_iso()
plot_attention_maps(fig4_panels(snakemake.input.npz), "results/figures/fig4")
write_provenance(
    snakemake.output.prov,
    rule=snakemake.rule,
    inputs=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf, snakemake.output.csv],
    seed=snakemake.params.seed,
    started=started,
)
