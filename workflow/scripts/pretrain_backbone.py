# Snakemake adapter: pretrain a backbone on clean ImageNet-100 (rule pretrain_backbone).

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.engine.distributed import run_job
from robustkd.joblog import configure_job_logging
from robustkd.triggers import with_operational

configure_job_logging(snakemake.log[0])
# checkpoint_every, log_every of the pretrain section: not params (no rerun), from the config.
spec = with_operational(
    snakemake.params.backbone, snakemake.config, f"backbones.{snakemake.wildcards.backbone}"
)
pretrain = dict(spec.pop("pretrain"))
# More than one GPU (resource gpu or a gpu gres): torchrun, one process per GPU.
run_job(
    "robustkd.engine.jobs:pretrain_job",
    {
        "backbone": spec,
        "pretrain": {k: v for k, v in pretrain.items() if k != "seed"},
        # One teacher per training seed: pretrain.seed is the offset of their seeds.
        "seed": pretrain.get("seed", 0) + int(snakemake.wildcards.seed),
        "data_dir": snakemake.input.data,
        "views": snakemake.params.views,
        "evaluation": snakemake.params.evaluation,
        "out_weights": snakemake.output.weights,
        "threads": snakemake.threads,
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
    },
    name="pretrain",
    resources=snakemake.resources,
    log_file=snakemake.log[0],
)
