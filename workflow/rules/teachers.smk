# Teachers: a backbone with a `pretrain` section is pretrained here, with labels, on the
# pretraining corpus (data.pretrain_corpus: ImageNet classes disjoint from ImageNet-100's, the
# miniature's stand-in for DINO's and CLIP's pretraining on other data); hub or local weights
# need no rule.


rule pretrain_backbone:
    input:
        data=get_pretrain_data,
    output:
        weights="results/teachers/{backbone}/model.pth",
        metrics="results/teachers/{backbone}/metrics.json",
        record=run_record(teacher_weights("{backbone}")),
    log:
        "logs/pretrain_backbone/{backbone}.log",
    benchmark:
        "logs/pretrain_backbone/{backbone}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("pretrain_backbone"),
    params:
        # Without checkpoint_every and log_every (operational: pretrain_backbone.py reads them
        # from the config; common.smk, "Rerun triggers").
        backbone=get_backbone_config,
        views=config["views"],
        evaluation=config["evaluation"],
    script:
        "../scripts/pretrain_backbone.py"
