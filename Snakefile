# robustkd: regenerate the tables and figures of two distortion-robust distillation papers.
#   Offline miniature:  snakemake --cores 2 --configfile config/demo.yaml all
#   SLURM cluster:      snakemake --profile profiles/slurm all
#   Results elsewhere:  snakemake -s <checkout>/Snakefile -d /scratch/run --cores 2 all
from snakemake.utils import min_version

min_version("8.20")


# The base config is the workflow's own: found beside this file, whatever the working directory.
configfile: f"{workflow.basedir}/config/config.yaml"


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
include: "workflow/rules/corruptions.smk"


wildcard_constraints:
    **get_wildcard_constraints(),


rule all:
    default_target: True
    input:
        get_all_inputs,


rule data:
    input:
        get_prepared_datasets(),
