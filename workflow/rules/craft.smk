# The CRAFT study (paper 004): a CIFAR-10-C style copy of the test set, the teacher, the
# students (a job per method and seed, or per method for every seed: jobs.seeds_per_job),
# and the table and figures. Target: `craft`.


rule craft_corrupt_testset:
    input:
        data="results/data/cifar10",
    output:
        corrupted=list(get_craft_cifar10c().values()),
        labels=get_craft_cifar10c_labels(),
        record=run_record(get_craft_cifar10c_labels()),
    log:
        "logs/craft/corrupt_testset.log",
    benchmark:
        "logs/craft/corrupt_testset.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        corruptions=get_craft_cifar10c(),
        severities=config["craft"]["corruptions"]["severities"],
        seed=config["craft"]["corruptions"]["seed"],
    script:
        "../scripts/craft_corrupt.py"


rule craft_teacher:
    input:
        data="results/data/cifar10",
        corrupted=list(get_craft_cifar10c().values()),
        labels=get_craft_cifar10c_labels(),
    output:
        weights=get_craft_teacher("weights"),
        metrics=get_craft_teacher("metrics"),
        record=run_record(get_craft_teacher("metrics")),
    log:
        "logs/craft/teacher.log",
    benchmark:
        "logs/craft/teacher.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("craft_teacher"),
    params:
        # Without checkpoint_every and log_every (operational: the script reads them from the
        # config; common.smk, "Rerun triggers").
        craft=scientific(config["craft"]),
        cifar10c=get_craft_cifar10c(),
    script:
        "../scripts/craft_teacher.py"


rule craft_student:
    input:
        data="results/data/cifar10",
        teacher=get_craft_teacher("weights"),
        corrupted=list(get_craft_cifar10c().values()),
        labels=get_craft_cifar10c_labels(),
    output:
        students=get_craft_student_outputs("weights"),
        metrics=get_craft_student_outputs("metrics"),
        evals=get_craft_eval_outputs(),
        records=get_craft_student_outputs("record"),
    log:
        job_log("logs/craft/students/{craft_method}"),
    benchmark:
        job_log("logs/craft/students/{craft_method}", "benchmark.tsv")
    wildcard_constraints:
        craft_method=get_craft_method_constraint(),
    priority: get_craft_student_priority
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=planned_runtime("craft_student"),
    params:
        craft=scientific(config["craft"]),  # operational settings: from the config, as above
        seeds=get_job_seeds,
        conditions=get_craft_conditions(),
        cifar10c=get_craft_cifar10c(),
    script:
        "../scripts/craft_student.py"


rule craft_report:
    input:
        get_craft_report_inputs(),
    output:
        tables=for_report(craft_layout.table_files(), get_craft_report_flags()),
        figures=for_report(craft_layout.figure_files(), get_craft_report_flags()),
        figures_provenance=craft_layout.figures_provenance(),
    log:
        "logs/craft/report.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        config=get_craft_report_config(),
    script:
        "../scripts/craft_report.py"


rule craft:
    input:
        get_craft_outputs(),
