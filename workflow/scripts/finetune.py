# Snakemake adapter: fine-tune and evaluate one classifier per seed (rule finetune).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from robustkd.engine.jobs import finetune_job
from robustkd.joblog import configure_job_logging

configure_job_logging(snakemake.log[0])
finetune_job(
    backbone=snakemake.params.backbone,
    init_weights=snakemake.params.init,
    distortion=snakemake.params.distortion,
    train_cfg=snakemake.params.train,
    evaluation=snakemake.params.evaluation,
    data_dir=snakemake.input.data,
    views=snakemake.params.views,
    fraction=float(snakemake.wildcards.fraction),
    seeds=snakemake.params.seeds,
    outputs=snakemake.output.models,
    threads=snakemake.threads,
    rule=snakemake.rule,
    wildcards=dict(snakemake.wildcards),
    inputs=list(snakemake.input.init),
)
