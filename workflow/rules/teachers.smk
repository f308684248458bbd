# Teachers: a backbone with a `pretrain` section is pretrained here on clean ImageNet-100
# (the miniature's stand-in for DINO / CLIP); hub or local weights need no rule.


rule pretrain_backbone:
    input:
        data="results/data/imagenet100",
    output:
        weights="results/teachers/{backbone}/model.pth",
        metrics="results/teachers/{backbone}/metrics.json",
    log:
        "logs/pretrain_backbone/{backbone}.log",
    benchmark:
        "logs/pretrain_backbone/{backbone}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=720,
    params:
        backbone=get_backbone_config,
        views=config["views"],
        evaluation=config["evaluation"],
    script:
        "../scripts/pretrain_backbone.py"
