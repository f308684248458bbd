# Tables (CSV, Markdown, LaTeX, HTML + provenance) and figures (PNG, PDF, data CSV) from the
# metrics files. Outputs flagged report(...) make up `snakemake --report report.zip` (what exists:
# common.smk, "The report"); their captions, workflow/report/*.rst, are rendered with the run's
# config. Categories: Claims; Tables and Figures (Main paper, Beyond the paper, Training); CRAFT
# study (craft.smk); Provenance (each table's record, as JSON and as a page).


rule make_table:
    input:
        get_table_metrics,
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
        html=report(
            "results/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            subcategory=get_table_subcategory,
            labels={"table": "{table}"},
        ),
        provenance=report(
            "results/tables/{table}.provenance.json",
            caption="../report/table_provenance.rst",
            category="Provenance",
            labels={"table": "{table}", "view": "record (JSON)"},
        ),
    log:
        "logs/report/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        config=scientific(config),  # common.smk, "Rerun triggers"
    script:
        "../scripts/make_table.py"


rule make_figure:
    input:
        get_figure_inputs,
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="Main paper",
            labels={"figure": "{figure}"},
        ),
        pdf="results/figures/{figure}.pdf",
        csv="results/figures/{figure}.csv",
        prov="results/figures/{figure}.provenance.json",
    log:
        "logs/report/{figure}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        config=scientific(config),  # common.smk, "Rerun triggers"
    script:
        "../scripts/make_figure.py"


rule make_fig4:
    input:
        npz=FIG4_ATTENTION,
    output:
        png=report(
            "results/figures/fig4.png",
            caption="../report/fig4.rst",
            category="Figures",
            subcategory="Main paper",
            labels={"figure": "fig4"},
        ),
        pdf="results/figures/fig4.pdf",
        csv="results/figures/fig4.csv",
        prov="results/figures/fig4.provenance.json",
    log:
        "logs/report/fig4.log",
    conda:
        "../../envs/torch.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        seed=SEEDS[0],
    script:
        "../scripts/make_fig4.py"


# The report's page of a table's provenance: every cell with each seed's value, metrics file and
# sha256 (robustkd.report.pages), where the record itself is only a download. Written where
# Snakemake runs: it reads one small JSON file.
localrules:
    provenance_page,


rule provenance_page:
    input:
        source="results/tables/{table}.provenance.json",
    output:
        page=report(
            provenance_page("{table}"),
            caption="../report/provenance_page.rst",
            category="Provenance",
            labels={"table": "{table}", "view": "page"},
        ),
        record=record_beside(provenance_page("{table}")),
    log:
        "logs/report/{table}_provenance_page.log",
    conda:
        "../../envs/report.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        table_file="results/tables/{table}.csv",
    script:
        "../scripts/report_page.py"


rule table1:
    input:
        get_table_targets("table1"),


rule table2:
    input:
        get_table_targets("table2"),


rule table3:
    input:
        get_table_targets("table3"),


rule table4:
    input:
        get_table_targets("table4"),


# Beyond the paper (issue 17), outside `all` (the demo's time budget): Table 4 and the
# corruptions never trained on (rule corruptions, workflow/rules/corruptions.smk).
rule beyond:
    input:
        get_beyond_outputs(),


rule fig2:
    input:
        figure_files("fig2"),


rule fig3:
    input:
        figure_files("fig3"),


rule fig4:
    input:
        figure_files("fig4"),


rule claims:
    input:
        get_claims_inputs,
    output:
        csv="results/tables/claims.csv",
        md="results/tables/claims.md",
        html=report(
            "results/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
            labels=get_claims_labels,
        ),
        provenance=report(
            "results/tables/claims.provenance.json",
            caption="../report/table_provenance.rst",
            category="Provenance",
            labels={"table": "claims", "view": "record (JSON)"},
        ),
    log:
        "logs/report/claims.log",
    conda:
        "../../envs/report.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        config=scientific(config),  # common.smk, "Rerun triggers"
    script:
        "../scripts/claims.py"


# The decisive claims of the miniature: `make study` runs this target with config/study.yaml
# (20 seeds, the claims of Table 1, Table 3, Fig 3 and Fig 2) in study/, apart from the demo.


rule study:
    input:
        get_table_targets("table1"),
        get_table_targets("table3"),
        CLAIMS_OUTPUTS,


rule distill_curves:
    input:
        get_distill_curve_students,
    output:
        png=report(
            "results/figures/distill_loss.png",
            caption="../report/distill_loss.rst",
            category="Figures",
            subcategory="Training",
            labels={"figure": "distillation loss"},
        ),
        pdf="results/figures/distill_loss.pdf",
        csv="results/figures/distill_loss.csv",
        prov="results/figures/distill_loss.provenance.json",
    log:
        "logs/report/distill_loss.log",
    conda:
        "../../envs/torch.yaml"
    params:
        library=LIBRARY,  # common.smk, "Rerun triggers"
        runs=get_distill_curve_runs,
    script:
        "../scripts/distill_curves.py"
