"""Print the configuration reference: ``python -m robustkd.configdoc > config/README.md``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robustkd.configdoc.render import generate


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``config/README.md``'s text, as the checkout's schema and configs make it, to stdout.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m robustkd.configdoc", description=__doc__)
    parser.add_argument("--root", default=".", help="the checkout holding config/ (default: .)")
    sys.stdout.write(generate(parser.parse_args(argv).root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
