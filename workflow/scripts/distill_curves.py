# Snakemake adapter: the distillation loss curves of every student (rule distill_curves).
import sys
from pathlib import Path

# This checkout's robustkd, or a clear error (robustkd_checkout.py, beside this script).
from robustkd_checkout import use_checkout_package

use_checkout_package(snakemake)

from robustkd.joblog import configure_job_logging
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.curves import epoch_losses, plateau_summary, plot_distill_losses

configure_job_logging(snakemake.log[0])
started = now_iso()
runs = snakemake.params.runs
logs = [(m, d, s, str(Path(p).parent / "log.jsonl")) for m, d, s, p in runs]
df = epoch_losses(logs)
plot_distill_losses(df, Path(snakemake.output.csv).with_suffix(""))
summary = plateau_summary(df)
print(summary.to_string(index=False), file=sys.stderr)
write_provenance(
    snakemake.output.prov,
    rule=snakemake.rule,
    inputs=[p for *_, p in logs],
    outputs=[snakemake.output.png, snakemake.output.pdf, snakemake.output.csv],
    started=started,
    extra={"plateau": summary.to_dict(orient="records")},
)
