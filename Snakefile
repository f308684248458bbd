# robustkd: regenerate the tables and figures of two distortion-robust distillation papers.
#   Offline miniature:  snakemake --cores 2 --configfile config/demo.yaml all
#   SLURM cluster:      snakemake --profile profiles/slurm all
from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/craft_common.smk"
include: "workflow/rules/craft.smk"


wildcard_constraints:
    **get_wildcard_constraints(),


rule all:
    default_target: True
    input:
        get_final_output(),


rule data:
    input:
        get_prepared_datasets(),
