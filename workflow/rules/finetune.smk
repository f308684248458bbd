# Supervised fine-tuning on distorted images, then evaluation on the distorted val split.


rule finetune:
    input:
        data="results/data/{dataset}",
        init=get_finetune_init,
    output:
        models=get_finetune_outputs("model"),
        metrics=get_finetune_outputs("metrics"),
    log:
        "logs/finetune/{dataset}/{method}/{distortion}/frac{fraction}.log",
    benchmark:
        "logs/finetune/{dataset}/{method}/{distortion}/frac{fraction}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=1440,
    params:
        backbone=get_backbone_spec("vit"),
        init=get_finetune_init_params,
        distortion=get_distortion,
        train=config["training"]["finetune"],
        evaluation=config["evaluation"],
        views=config["views"],
        seeds=SEEDS,
    script:
        "../scripts/finetune.py"
