# Pretraining of students on distorted images without labels: multi-level distillation of the
# ViT (ours and its ablations) and Contrastive Inversion of the CLIP encoder (baseline). A job
# trains one seed or every seed (jobs.seeds_per_job). The training settings are params without
# checkpoint_every and log_every: operational, read by distill.py from the config at
# `settings_key` (common.smk, "Rerun triggers").


rule distill:
    input:
        data="results/data/imagenet100",
        teacher=get_teacher_files("vit"),
    output:
        students=get_distill_outputs(),
        records=get_distill_records(),
    log:
        job_log("logs/distill/{distill_method}/{distortion}"),
    benchmark:
        job_log("logs/distill/{distill_method}/{distortion}", "benchmark.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("distill"),
    params:
        method="{distill_method}",
        backbone=get_backbone_spec("vit"),
        teachers=get_seed_teachers("vit"),
        loss=config["loss"],
        distortion=get_distortion,
        train=scientific(config["training"]["distill"]),
        settings_key="training.distill",
        views=config["views"],
        seeds=get_job_seeds,
    script:
        "../scripts/distill.py"


rule distill_ci:
    input:
        data="results/data/imagenet100",
        teacher=get_teacher_files("clip"),
    output:
        students=get_distill_outputs("ci"),
        records=get_distill_records("ci"),
    log:
        job_log("logs/distill/ci/{distortion}"),
    benchmark:
        job_log("logs/distill/ci/{distortion}", "benchmark.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("distill_ci"),
    params:
        method="ci",
        backbone=get_backbone_spec("clip"),
        teachers=get_seed_teachers("clip"),
        loss=config["ci_loss"],
        distortion=get_distortion,
        train=scientific(config["training"]["contrastive_inversion"]),
        settings_key="training.contrastive_inversion",
        views=config["views"],
        seeds=get_job_seeds,
    script:
        "../scripts/distill.py"
