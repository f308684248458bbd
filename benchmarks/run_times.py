"""Wall time per rule kind of one Snakemake run, read from Snakemake's own log.

    python benchmarks/run_times.py                      # the newest .snakemake/log/*.log
    python benchmarks/run_times.py .snakemake/log/2026-12-01T001059.snakemake.log

Snakemake logs each job's start (a ``[date]`` line, then ``rule <name>:`` or
``localrule <name>:`` and its ``jobid``) and end (``[date]`` then ``Finished jobid: <n>``), to
the second. This script pairs them and prints, per rule: jobs, total and mean job wall seconds,
and the share of the summed job time, then the run's wall time (first start to last end) and
how many jobs ran at once on average (summed job time / run wall time). Unlike the
``benchmark:`` files, it covers every rule, including data preparation and reports. Jobs that
never finished (failed or interrupted) are counted apart. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
END = re.compile(r"^Finished jobid: (\d+)")


def parse(path: Path) -> tuple[dict[str, list[float]], int, float]:
    """Job wall times by rule, the number of unfinished jobs, and the run's wall time (s)."""
    stamp: datetime | None = None
    rule: str | None = None
    started: dict[str, tuple[str, datetime]] = {}
    times: dict[str, list[float]] = defaultdict(list)
    first = last = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := STAMP.match(line.strip()):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            first = first or stamp
            last = stamp
        elif (m := START.match(line)) and stamp is not None:
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule is not None and stamp is not None:
            started[m.group(1)] = (rule, stamp)
            rule = None
        elif (m := END.match(line)) and m.group(1) in started and stamp is not None:
            name, t0 = started.pop(m.group(1))
            times[name].append((stamp - t0).total_seconds())
    wall = (last - first).total_seconds() if first and last else 0.0
    return dict(times), len(started), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("log", nargs="?", type=Path, help="a .snakemake/log/*.snakemake.log")
    args = p.parse_args()
    log = args.log
    if log is None:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            sys.exit("no .snakemake/log/*.snakemake.log here: give the log's path")
        log = logs[-1]
    times, unfinished, wall = parse(log)
    total = sum(sum(v) for v in times.values())
    print(f"{log}")
    print(f"{'rule':28s} {'jobs':>5s} {'total s':>9s} {'mean s':>8s} {'share':>6s}")
    for name, v in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        share = sum(v) / total if total else 0.0
        print(f"{name:28s} {len(v):5d} {sum(v):9.0f} {sum(v) / len(v):8.1f} {share:6.1%}")
    jobs = sum(len(v) for v in times.values())
    print(f"{'total':28s} {jobs:5d} {total:9.0f}")
    if unfinished:
        print(f"unfinished jobs (failed or interrupted): {unfinished}")
    if wall:
        print(
            f"run wall time {wall:.0f} s ({wall / 60:.1f} min); jobs at once on average "
            f"{total / wall:.2f}"
        )


if __name__ == "__main__":
    main()
