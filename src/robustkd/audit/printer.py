"""How the audit prints: the chain, one indented line per link and check, and its verdict.

Each link of the chain shows its rule, record, seed, code version, machine, wildcards and
config; each group of checks closes with ``ok`` or ``broken`` and the number of files
re-hashed. :func:`closing_lines` gives the verdict, counts, code versions and warnings.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from robustkd.audit.records import AuditResult

__all__ = ["ChainPrinter", "closing_lines", "machine", "plural"]


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def machine(rec: Mapping[str, Any]) -> str:
    """Where a job computed: its device and, if recorded, torch's CPU kernels and threads."""
    device = str(rec.get("device", "?"))
    hw = rec.get("hardware")
    if not isinstance(hw, Mapping) or hw.get("torch_cpu_capability") is None:
        return device
    threads = hw.get("torch_threads")
    return f"{device} ({hw['torch_cpu_capability']}, {threads} thread{'' if threads == 1 else 's'})"


class ChainPrinter:
    """Prints the chain, two spaces of indentation per level.

    Args:
        echo: Receives each line.
    """

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo

    def say(self, depth: int, text: str) -> None:
        """Print ``text`` at indentation level ``depth``."""
        self.echo("  " * depth + text)

    def say_wrapped(self, depth: int, label: str, items: list[str]) -> None:
        """Print ``label`` and the items, wrapped under it (nothing when there are none)."""
        if not items:
            return
        indent = "  " * depth
        lines = textwrap.wrap(
            "  ".join(items),
            width=max(60, 100 - len(indent)),
            initial_indent=f"{label} ",
            subsequent_indent=" " * (len(label) + 1),
            break_on_hyphens=False,
        )
        for line in lines:
            self.echo(indent + line)

    def status(self, depth: int, checked: dict[str, int], failed: list[str]) -> None:
        """The failed files, then ``ok`` or ``broken`` and what was re-hashed, by kind."""
        parts = [plural(n, what) for what, n in checked.items() if n]
        if failed:
            for path in failed:
                self.say(depth, f"FAILED {path}")
        self.say(depth, ("ok     " if not failed else "broken ") + ", ".join(parts) + " re-hashed")


def closing_lines(r: AuditResult) -> list[str]:
    """The closing lines of an audit: warnings, dirty code, verdict and counts, problems."""
    lines = [""]
    versions = ", ".join(
        f"{(c or 'unknown')[:12]}{' (dirty)' if d else ''} x{n}"
        for (c, d), n in sorted(r.commits.items(), key=lambda kv: -kv[1])
    )
    for w in r.warnings:
        lines.append(f"warning: {w}")
    dirty = sum(n for (_, d), n in r.commits.items() if d)
    if dirty:
        lines.append(
            f"note: {dirty} of {r.links} jobs ran on uncommitted changes (dirty): "
            "their commit alone does not pin the code."
        )
    counts = (
        f"{plural(r.cells, 'cell')}, {plural(r.links, 'job')}, "
        f"{plural(r.files, 'file')} re-hashed; code: {versions or 'none'}"
    )
    if r.ok:
        lines.append(f"AUDIT PASSED: {counts}")
    else:
        first = r.problems[0]
        lines.append(f"AUDIT FAILED: {plural(len(r.problems), 'problem')}; {counts}")
        lines += [f"  {p}" for p in r.problems]
        lines.append(f"first failing file: {first.path} ({first.kind})")
    return lines
