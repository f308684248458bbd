# Beyond the paper (issue 17): every Table 1 model, after fine-tuning, on the 15 benchmark
# corruptions x 5 severities it never trained on (robustkd.engine.corrupted,
# robustkd.report.corruptions). Not part of `all`: targets `corruptions` and `beyond`.


rule corrupt_evalset:
    input:
        data="results/data/imagenet100",
    output:
        corrupted=get_corruption_set_outputs(),
        labels=corruption_set_labels("{size}"),
        record=run_record(corruption_set_labels("{size}")),
    log:
        "logs/corruptions/corrupt_evalset_{size}px.log",
    benchmark:
        "logs/corruptions/corrupt_evalset_{size}px.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        corrupted=get_corruption_set_params,
        exp=config["experiments"]["corruptions"],
        preload_size=config["views"].get("preload_size"),
    script:
        "../scripts/corrupt_evalset.py"


rule evaluate_corruptions:
    input:
        data="results/data/imagenet100",
        models=get_ladder_models,
        corrupted=get_corruption_eval_set,
        labels=get_corruption_eval_labels,
    output:
        scores=corruption_eval_file("{method}", "{distortion}"),
        record=corruption_eval_record("{method}", "{distortion}"),
    log:
        "logs/evaluate_corruptions/{method}/{distortion}.log",
    benchmark:
        "logs/evaluate_corruptions/{method}/{distortion}.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("evaluate_corruptions"),
    params:
        backbone=get_method_backbone_spec,
        corrupted=get_corruption_eval_set_params,
        severities=config["experiments"]["corruptions"]["severities"],
        evaluation=config["evaluation"],
        views=config["views"],
        seeds=SEEDS,
    script:
        "../scripts/evaluate_corruptions.py"


rule corruption_report:
    input:
        get_corruption_report_inputs(),
    output:
        for_report(corruption_outputs(), get_corruption_report_flags()),
    log:
        "logs/report/corruptions.log",
    conda:
        "../../envs/torch.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        models=get_corruption_report_models(),
        exp=config["experiments"]["corruptions"],
        methods=config["experiments"]["table1"]["methods"],
    script:
        "../scripts/corruption_report.py"


rule corruptions:
    input:
        corruption_outputs(),
