"""The ``robustkd`` command.

    robustkd audit results/tables/table1.csv                 # every cell of Table 1
    robustkd audit table3 --cell global noise-0.5            # one cell (row, column: key or label)
    robustkd audit results/distill/ours/mask-0.90/seed0/student.pth   # any output of the pipeline
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

from robustkd.audit import AuditError, audit

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
    return parser


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
    return EXIT_USAGE  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
