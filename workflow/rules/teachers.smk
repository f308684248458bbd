# Teachers: a backbone with a `pretrain` section is pretrained here, with labels, on the
# pretraining corpus (data.pretrain_corpus: ImageNet classes disjoint from ImageNet-100's, the
# miniature's stand-in for DINO's and CLIP's pretraining on other data). One teacher per
# training seed, pretrained with seed pretrain.seed + {seed}: every seed's students and
# supervised baseline start from their own teacher, so the seed-to-seed spread the claims test
# against holds the teacher's too (docs/claims.md, "One stand-in teacher per seed").


rule pretrain_backbone:
    input:
        data=get_pretrain_data,
    output:
        weights=teacher_weights("{backbone}", "{seed}"),
        metrics=str(
            Path(teacher_weights("{backbone}", "{seed}")).parent / "metrics.json"
        ),
        record=run_record(teacher_weights("{backbone}", "{seed}")),
    log:
        "logs/pretrain_backbone/{backbone}/seed{seed}.log",
    benchmark:
        "logs/pretrain_backbone/{backbone}/seed{seed}.benchmark.tsv"
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


# Hub weights (`weights: hub`): downloaded once, where Snakemake runs (a local rule: on a cluster
# the login node, which has internet), into results/weights/<backbone>/; every job that needs
# them reads that file. A local weights file in the config needs no rule.
localrules:
    fetch_weights,


rule fetch_weights:
    output:
        weights=fetched_weights("{backbone}")["weights"],
        record=fetched_weights("{backbone}")["record"],
    log:
        "logs/fetch_weights/{backbone}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        backbone=get_hub_backbone_config,
    script:
        "../scripts/fetch_weights.py"
