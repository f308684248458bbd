# Evaluation beyond the training distortion: Fig 2's ladder of stronger severities.


rule evaluate_ladder:
    input:
        data="results/data/imagenet100",
        models=get_ladder_models,
    output:
        ladder_file("{method}", "{distortion}"),
    log:
        "logs/evaluate_ladder/{method}/{distortion}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        backbone=get_method_backbone_spec,
        tests=get_ladder_tests,
        evaluation=config["evaluation"],
        views=config["views"],
        seeds=SEEDS,
    script:
        "../scripts/evaluate_ladder.py"
