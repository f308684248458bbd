# Snakemake adapter: draw Fig 4's attention maps (rule make_fig4).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.figures import plot_attention_maps
from robustkd.report.paper import fig4_panels

configure_job_logging(snakemake.log[0])
started = now_iso()
panels = fig4_panels(
    backbone=snakemake.params.backbone,
    teacher_weights=None,
    ours=list(snakemake.input.ours),
    supervised=list(snakemake.input.supervised),
    distortions=snakemake.params.distortions,
    data_dir=snakemake.input.data,
    views=snakemake.params.views,
    images=snakemake.params.images,
    seed=snakemake.params.seed,
)
plot_attention_maps(panels, "results/figures/fig4")
write_provenance(
    snakemake.output.prov,
    rule=snakemake.rule,
    inputs=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf, snakemake.output.csv],
    config={
        "backbone": snakemake.params.backbone,
        "distortions": snakemake.params.distortions,
        "images": snakemake.params.images,
        "views": snakemake.params.views,
    },
    seed=snakemake.params.seed,
    started=started,
)
