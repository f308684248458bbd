# Supervised fine-tuning on distorted images, then evaluation on the distorted test split.
# Three kinds of job, one per (method, distortion) and seed, or per (method, distortion) for
# every seed (jobs.seeds_per_job):
#   finetune            ImageNet-100, all labels      (Tables 1 and 3, Figs 2 and 3)
#   finetune_fractions  ImageNet-100, label fractions (Fig 3)
#   transfer            every Table 2 dataset         (Table 2)

for _kind in FINETUNE_KINDS:
    if not finetune_runs(config, _kind):
        continue

    rule:
        name:
            FINETUNE_RULES[_kind]
        input:
            unpack(get_finetune_inputs(_kind)),
        output:
            models=get_finetune_outputs(_kind, "model"),
            metrics=get_finetune_outputs(_kind, "metrics"),
            records=get_finetune_outputs(_kind, "record"),
        log:
            job_log(f"logs/{FINETUNE_RULES[_kind]}/{{method}}/{{distortion}}"),
        benchmark:
            job_log(
                f"logs/{FINETUNE_RULES[_kind]}/{{method}}/{{distortion}}",
                "benchmark.tsv",
            )
        conda:
            "../../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=planned_runtime(FINETUNE_RULES[_kind]),
        params:
            backbone=get_method_backbone_spec,
            runs=get_finetune_runs(_kind),
            distortion=get_distortion,
            # Without checkpoint_every and log_every (operational: finetune.py reads them from
            # the config at settings_key; common.smk, "Rerun triggers").
            train=scientific(config["training"]["finetune"]),
            settings_key="training.finetune",
            evaluation=config["evaluation"],
            views=config["views"],
        script:
            "../scripts/finetune.py"
