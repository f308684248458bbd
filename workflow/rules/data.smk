# Raw data -> prepared datasets (results/data/{dataset}/, the prepared-dataset contract).


rule demo_raw:
    output:
        directory("results/raw_demo/{dataset}"),
    log:
        "logs/demo_raw/{dataset}.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["demo_raw"]["seed"],
        spec=get_demo_raw_spec,
    script:
        "../scripts/demo_raw.py"


for _dataset in DATASETS:

    rule:
        name:
            f"prepare_{_dataset}"
        input:
            get_raw_input(_dataset),
        output:
            directory(f"results/data/{_dataset}"),
        log:
            f"logs/prepare/{_dataset}.log",
        conda:
            "../../envs/torch.yaml"
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            dataset=_dataset,
            source=get_dataset_source(_dataset),
            download=config["data"]["download"],
        script:
            "../scripts/prepare_dataset.py"


rule prepare_pretrain_corpus:
    input:
        get_raw_input("imagenet100", corpus=True),
    output:
        directory("results/data/pretrain_corpus"),
    log:
        "logs/prepare/pretrain_corpus.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        dataset="imagenet100",  # read by the ILSVRC-2012 reader: other classes of ImageNet
        config_key="data.pretrain_corpus",
        source=get_pretrain_corpus_source,
        download=config["data"]["download"],
    script:
        "../scripts/prepare_dataset.py"
