# Snakemake adapter: compute Fig 4's attention maps (rule attention_maps).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.attention import attention_maps_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
attention_maps_job(
    backbone=snakemake.params.backbone,
    teacher=list(snakemake.input.teacher),
    ours=list(snakemake.input.ours),
    supervised=list(snakemake.input.supervised),
    distortions=snakemake.params.distortions,
    data_dir=snakemake.input.data,
    views=snakemake.params.views,
    images=snakemake.params.images,
    seed=snakemake.params.seed,
    out=snakemake.output.npz,
    rule=snakemake.rule,
)
