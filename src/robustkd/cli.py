"""The ``robustkd`` command.

    robustkd audit results/tables/table1.csv                 # every cell of Table 1
    robustkd audit table3 --cell global noise-0.5            # one cell (row, column: key or label)
    robustkd audit results/distill/ours/mask-0.90/seed0/student.pth   # any output of the pipeline
    robustkd plan all --throughput distill=1800 --gpus 8     # what a run costs, before it runs
    robustkd plan --configfile config/demo.yaml table1       # targets before or after options
    robustkd plan all --measured results/gpu_check/gpu_check.jsonl   # throughputs measured
    robustkd audit results/data/imagenet100                  # or any folder it wrote

Exit status: 0 when the whole chain is intact, 1 when a file is missing or changed (the last
line names the first one), 2 on bad input (unknown table, missing or malformed provenance of
the table, unknown cell, a folder without provenance records).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from robustkd.audit import AuditError, audit
from robustkd.errors import RobustKDError

__all__ = ["main"]

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustkd",
        description="Tools of the robustkd pipeline (run them from the project root).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "audit",
        help="re-hash the chain of files behind a table's numbers",
        description=(
            "Walk every cell of a table (or one) back to the raw data through the provenance "
            "records: metrics -> fine-tuned model -> student -> teacher -> prepared data -> raw "
            "data; re-hash every file and print each job's rule, config values, commit and "
            "seed. Exits 1 naming the first file that is missing or changed."
        ),
    )
    p.add_argument(
        "target",
        help="a table (table1, results/tables/table1.csv, .md, .tex, .html), or any file or "
        "folder under results/ (a folder: the job that wrote it, or every job and table below)",
    )
    p.add_argument(
        "--cell",
        nargs=2,
        metavar=("ROW", "COL"),
        help="audit one cell, given by its row and column key (mask-0.90 ours) or label",
    )
    p.add_argument(
        "--root", default=".", help="the project root holding results/ (default: current folder)"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print only the verdict and the problems"
    )
    p = sub.add_parser(
        "plan",
        help="print what a target's training jobs cost: images, GPU-hours, wall time",
        description=(
            "List every training and evaluation job of a target (from a forced Snakemake dry "
            "run), the images each pushes through the network, and the GPU-hours at the given "
            "throughputs (images/s per GPU by rule kind: assumed defaults, measured ones read "
            "with --measured, or given with --throughput; the plan says which), then totals "
            "and the wall time on N GPUs. See robustkd.plan."
        ),
    )
    p.add_argument(
        "targets",
        nargs="*",
        default=[],
        help="Snakemake targets (default: all), before or after the options",
    )
    p.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="config overlays, as given to snakemake (.yaml, .yml or .json; may be repeated; a "
        "word after them without such an ending is a target)",
    )
    p.add_argument(
        "--throughput",
        nargs="+",
        action="extend",
        default=[],
        metavar="RULE=IMG_PER_S",
        help="images/s per GPU of a rule kind (e.g. distill=1800; 'evaluate' for evaluation; "
        "a word after them without '=' is a target)",
    )
    p.add_argument(
        "--measured",
        action="append",
        default=[],
        metavar="FILE",
        help="read measured throughputs instead of the assumed defaults: the record of make "
        "gpu-check (results/gpu_check/gpu_check.jsonl), a training job's provenance.json, or "
        "a folder of them (a previous run's results/: median per rule kind); may be repeated, "
        "a later file winning; --throughput wins over it",
    )
    p.add_argument("--gpus", type=int, default=1, help="GPUs for the wall-time estimate")
    p.add_argument(
        "--snakefile", default=None, help="the workflow's Snakefile (default: ./Snakefile)"
    )
    p.add_argument("--root", default=".", help="the working directory of the run (default: .)")
    return parser


_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def _targets_among_options(args: argparse.Namespace) -> None:
    """Move the targets that ``--configfile`` or ``--throughput`` took in to ``args.targets``.

    Both options take several values, so ``plan --configfile demo.yaml table1`` gave table1
    to ``--configfile`` (Snakemake's own ``--configfile`` does the same). A config file ends in
    ``.yaml``, ``.yml`` or ``.json`` and a throughput holds ``=``: any other word is a target.
    """
    files = [f for f in args.configfile if Path(f).suffix.lower() in _CONFIG_SUFFIXES]
    rates = [t for t in args.throughput if "=" in t]
    moved = [f for f in args.configfile if f not in files]
    moved += [t for t in args.throughput if t not in rates]
    args.configfile, args.throughput = files, rates
    args.targets = [*args.targets, *moved] or ["all"]


def _plan(args: argparse.Namespace) -> int:
    from robustkd.config import load_config
    from robustkd.plan import (
        PlanError,
        dry_run_jobs,
        format_plan,
        plan_jobs,
        resolve_throughput,
        set_sizes,
    )

    _targets_among_options(args)
    snakefile = Path(args.snakefile or Path(args.root) / "Snakefile")
    try:
        throughput = resolve_throughput(args.throughput, args.measured)
        config = load_config(snakefile.parent / "config" / "config.yaml", *args.configfile)
        jobs = dry_run_jobs(
            args.targets, args.configfile, snakefile=snakefile.resolve(), workdir=args.root
        )
        planned = plan_jobs(jobs, config, set_sizes(config, args.root))
        lines = format_plan(planned, throughput.rates, args.gpus, throughput.sources)
    except (PlanError, RobustKDError) as exc:
        print(f"robustkd plan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "audit":

        def echo(line: str) -> None:
            if not args.quiet:
                print(line)

        try:
            result = audit(
                args.target,
                cell=tuple(args.cell) if args.cell else None,
                root=args.root,
                echo=echo,
            )
        except AuditError as exc:
            print(f"robustkd audit: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:  # `robustkd audit ... | head`: the reader left
            sys.stdout = open(os.devnull, "w")  # the recipe of the Python docs
            return EXIT_BROKEN
        for line in result.summary:
            print(line)
        return EXIT_OK if result.ok else EXIT_BROKEN
    if args.command == "plan":
        return _plan(args)
    return EXIT_USAGE  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
