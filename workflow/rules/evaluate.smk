# Evaluation beyond the training distortion: Fig 2's ladder of stronger severities.


rule evaluate_ladder:
    input:
        data="results/data/imagenet100",
        models=get_ladder_models,
    output:
        ladder=ladder_file("{method}", "{distortion}"),
        record=ladder_record("{method}", "{distortion}"),
    log:
        "logs/evaluate_ladder/{method}/{distortion}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("evaluate_ladder"),
    params:
        backbone=get_method_backbone_spec,
        tests=get_ladder_tests,
        evaluation=config["evaluation"],
        views=config["views"],
        seeds=SEEDS,
    script:
        "../scripts/evaluate_ladder.py"


# Fig 4's attention maps (seed 0): the teacher on clean images, our students and the
# supervised classifiers on distorted ones; rule make_fig4 only draws them.
rule attention_maps:
    input:
        unpack(get_fig4_inputs),
    output:
        npz=FIG4_ATTENTION,
        prov=str(Path(FIG4_ATTENTION).parent / "provenance.json"),
    log:
        "logs/attention_maps/fig4.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        backbone=get_backbone_spec("vit"),
        distortions=get_fig4_distortions(),
        images=config["experiments"]["fig4"]["images"],
        views=config["views"],
        seed=SEEDS[0],
    script:
        "../scripts/attention_maps.py"
