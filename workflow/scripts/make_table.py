# Snakemake adapter: build one table from its metrics files (rule make_table): CSV, Markdown,
# LaTeX, HTML, with paired comparisons of ours vs every other method, and the table's
# provenance (cell -> metrics files of every seed) that `robustkd audit` starts from.
from pathlib import Path

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.config import distortion_entry
from robustkd.joblog import configure_job_logging
from robustkd.layout import METHOD_LABELS, table_cells, table_spec
from robustkd.report.tables import build_table, with_reference_comparisons

configure_job_logging(snakemake.log[0])
name = snakemake.wildcards.table
config = snakemake.params.config
exp = config["experiments"][name]
spec = table_spec(config, name)
# Tables 1 and 2: ours vs each baseline; Table 3: the full loss (row "ours") vs each ablation;
# Table 4 brings its own comparisons.
if name != "table4":
    label = dict(spec.rows).get("ours", METHOD_LABELS["ours"])
    spec = with_reference_comparisons(spec, "ours", label)
named = [*exp["distortions"], *([exp["train"]] if "train" in exp else [])]
build_table(
    spec,
    table_cells(config, name),
    Path(snakemake.output.csv).with_suffix(""),
    provenance={
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards),
        "config": {
            f"experiments.{name}": exp,
            "seeds": config["seeds"],
            "distortions": {d: distortion_entry(config, d) for d in named},
        },
    },
)
