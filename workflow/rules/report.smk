# Tables (CSV, Markdown, LaTeX) from the per-seed metrics files.


rule make_table:
    input:
        get_table_metrics,
    output:
        multiext("results/tables/{table}", ".csv", ".md", ".tex"),
    log:
        "logs/report/{table}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        config=config,
    script:
        "../scripts/make_table.py"


rule table1:
    input:
        get_table_outputs("table1"),


rule table3:
    input:
        get_table_outputs("table3"),
