# Multi-level distillation: one student per seed for a (method, distortion) pair.


rule distill:
    input:
        data="results/data/imagenet100",
        teacher=get_backbone_weights("vit"),
    output:
        students=get_distill_outputs(),
    log:
        "logs/distill/{distill_method}/{distortion}.log",
    benchmark:
        "logs/distill/{distill_method}/{distortion}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=1440,
    params:
        backbone=get_backbone_spec("vit"),
        loss=config["loss"],
        distortion=get_distortion,
        train=config["training"]["distill"],
        views=config["views"],
        seeds=SEEDS,
    script:
        "../scripts/distill.py"
