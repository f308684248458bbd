"""Write docs/results.md and the README's results block from one run's own tables.

    python docs/generate_results.py RUN_DIR        # RUN_DIR holds results/ and .snakemake/
    make results-docs RUN=RUN_DIR                  # the same with the project's venv

Nothing on the generated page is typed: every table is copied unedited from the files the run
wrote (``results/tables/{table1,table2,table3,claims,table4,corruptions}.md``,
``results/craft/tables/craft_{table,per_severity}.md``; tables the run did not build are
listed as such), and the facts about the run come from what it recorded:

- date and machine: the tables' and a training job's ``provenance.json`` (CPU, torch's kernel
  level, GPUs, software versions);
- config files, cores, jobs and wall time: the Snakemake log that wrote Table 1
  (``.snakemake/log/*.snakemake.log``; time per rule kind with ``benchmarks/run_times.py``);
- where a number came from: ``robustkd audit table1 --cell noise-0.5 ours`` run on the run's
  directory (``--cell`` picks another cell, ``--no-audit`` skips it).

With ``--study DIR`` (a finished ``make study``: its ``results/tables/claims.md`` and Snakemake
log) the page and the README block also show the study's claims and its run (``--study-logs LOG
[LOG ...]``: every Snakemake log that built the study, when more than one run did, e.g. seeds
added to a finished study; their commands are listed and their wall times added), and with
``--agreement FILE [FILE ...]`` (printed outputs of ``benchmarks/claims_agreement.py``, saved to
files; the README shows the first, the page all) whether the verdicts survived a change of CPU
kernels. ``--keep-study`` instead keeps the study's and the agreement's sections of the page
and the study's part of the README block as the last generation wrote them: for a new demo
run when the study's own run is not at hand and did not change (the study pins its settings
in ``config/study.yaml``, so a change of the demo's overlay leaves its merged config alone).

It also rewrites the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in
README.md (the run's Table 1 and its claims summary line) and copies the run's figures
(``results/figures/{fig2,fig3,fig4,distill_loss,corruptions}.png``) into docs/demo/
(``--no-figures`` keeps the ones there).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
FIGURES = ("fig2", "fig3", "fig4", "distill_loss", "corruptions")

MINIATURE_NOTE = (
    "Read the numbers with the miniature's limits in mind ([miniature.md](miniature.md)):",
    "10 classes at 32 px, stand-in teachers; the CI column mostly measures the CNN stand-in for",
    "CLIP, not the method.",
)

# (heading, file under the run's results/, what builds it when it is missing)
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("Table 1: ImageNet-100 under distortion", "tables/table1.md", "snakemake table1"),
    ("Table 2: transfer", "tables/table2.md", "snakemake table2"),
    ("Table 3: loss ablation", "tables/table3.md", "snakemake table3"),
    ("Claims", "tables/claims.md", "snakemake claims"),
    ("Table 4: one student for every distortion", "tables/table4.md", "snakemake table4"),
    ("Corruptions never trained on", "tables/corruptions.md", "snakemake corruptions"),
    ("The CRAFT study", "craft/tables/craft_table.md", "snakemake craft"),
    ("The CRAFT study per severity", "craft/tables/craft_per_severity.md", "snakemake craft"),
)


@dataclass
class RunInfo:
    """What the run recorded about itself."""

    date: str = "unknown"
    configs: list[str] = field(default_factory=list)
    command: str = ""
    cores: str = ""
    jobs: str = ""
    wall_s: float = 0.0
    machine: str = "unknown"
    software: str = ""
    rule_times: dict[str, list[float]] = field(default_factory=dict)
    runs: int = 1


def load_run_times() -> ModuleType:
    """The log parser of ``benchmarks/run_times.py`` (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "run_times.py"
    spec = importlib.util.spec_from_file_location("run_times", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot load")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table1_log(run: Path) -> Path | None:
    """The newest Snakemake log of ``run`` that wrote Table 1, if any."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    for log in reversed(logs):
        if "results/tables/table1.md" in log.read_text(encoding="utf-8", errors="replace"):
            return log
    return None


def checkout_relative(path: str, base: str) -> str:
    """``path`` relative to the checkout it was given from, when it lies inside it."""
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1 :]
    return path


def read_log(log: Path, info: RunInfo) -> None:
    """Fill the config files, command, cores, jobs and wall time from a Snakemake log."""
    text = log.read_text(encoding="utf-8", errors="replace")
    base = m.group(1).strip() if (m := re.search(r"^\s*Base directory: (.+)$", text, re.M)) else ""
    if m := re.search(r"^\s*Command: (.+)$", text, re.M):
        args = shlex.split(m.group(1))
        configs, targets, i = [], [], 1  # args[0] is snakemake's __main__.py
        while i < len(args):
            if args[i] == "--configfile":
                i += 1
                while i < len(args) and not args[i].startswith("-"):
                    configs.append(checkout_relative(args[i], base))
                    i += 1
                continue
            if args[i] in ("--cores", "-c", "--scheduler") and i + 1 < len(args):
                targets += [args[i], args[i + 1]]
                i += 2
                continue
            if args[i] in ("--snakefile", "-s", "--directory", "-d"):
                i += 2
                continue
            if not args[i].startswith("-"):
                targets.insert(0, args[i])
            i += 1
        info.configs = ["config/config.yaml", *configs]
        info.command = " ".join(["snakemake", *targets, "--configfile", *configs])
    if m := re.search(r"^Provided cores: (\d+)", text, re.M):
        info.cores = m.group(1)
    if m := re.search(r"^total\s+(\d+)", text, re.M):
        info.jobs = m.group(1)
    times, _unfinished, wall = load_run_times().parse(log)
    info.rule_times, info.wall_s = times, wall


def read_records(run: Path, info: RunInfo) -> None:
    """Fill the date, machine and software from the run's provenance records."""
    table = run / "results" / "tables" / "table1.provenance.json"
    if table.is_file():
        finished = json.loads(table.read_text()).get("finished") or ""
        if finished:
            info.date = datetime.fromisoformat(finished).strftime("%Y-%m-%d")
    trained = sorted(
        (run / "results" / "finetune").glob("imagenet100/*/*/frac1/seed0/provenance.json")
    )
    if not trained:
        return
    record = json.loads(trained[0].read_text())
    hw, sw = record.get("hardware") or {}, record.get("software") or {}
    gpus = hw.get("cuda_devices")
    parts = [f"{hw.get('cpu', 'unknown CPU')} ({hw.get('machine', '?')})"]
    parts.append(f"GPUs: {', '.join(map(str, gpus))}" if gpus else "no GPU")
    if hw.get("torch_cpu_capability"):
        parts.append(f"torch CPU kernels {hw['torch_cpu_capability']}")
    if hw.get("torch_threads"):
        parts.append(f"{hw['torch_threads']} torch thread(s) per job")
    info.machine = ", ".join(parts)
    names = ("python", "torch", "torchvision", "timm", "snakemake")
    info.software = ", ".join(f"{n} {sw[n]}" for n in names if n in sw)


def embed(markdown: str) -> str:
    """A table file's Markdown, its own headings turned into bold lines (the page has its own)."""
    out = []
    for line in markdown.strip().splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        out.append(f"**{m.group(1)}**" if m else line)
    return "\n".join(out)


def first_table(markdown: str) -> str:
    """The title line, the first Markdown table and its notes of a table file."""
    lines, out, seen_table = markdown.strip().splitlines(), [], False
    for line in lines:
        if line.startswith("*") and not line.startswith("**") and seen_table:
            break  # the italic caption of the paired comparisons
        if line.startswith("|"):
            if seen_table and out and not out[-1].startswith("|") and out[-1].strip():
                break  # a second table
            seen_table = True
        out.append(line)
    return "\n".join(out).strip()


def claims_summary(markdown: str) -> str:
    """The claims table's one-line summary ("64 claims: ... (n = 3 seeds; ...)")."""
    for line in markdown.splitlines():
        if re.match(r"^\d+ claims?: ", line):
            return line.strip()
    return ""


def run_audit(run: Path, row: str, col: str) -> tuple[str, int]:
    """The output and exit status of ``robustkd audit table1 --cell ROW COL`` on ``run``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "robustkd.cli", "audit", "table1", "--cell", row, col]
    done = subprocess.run(
        [*cmd, "--root", str(run)], capture_output=True, text=True, env=env, timeout=600
    )
    return (done.stdout + done.stderr).rstrip(), done.returncode


def combine_logs(logs: list[Path], info: RunInfo) -> None:
    """Fill ``info`` from the Snakemake logs of several runs that built one folder, in order.

    Commands are joined with `` ; ``, jobs and wall times added, time per rule kind merged; the
    config files and cores are the last run's.
    """
    commands, jobs = [], 0
    for log in logs:
        part = RunInfo()
        read_log(log, part)
        commands.append(f"{part.command} ({part.wall_s / 60:.1f} min)")
        jobs += int(part.jobs or 0)
        info.wall_s += part.wall_s
        for rule, times in part.rule_times.items():
            info.rule_times.setdefault(rule, []).extend(times)
        info.configs, info.cores = part.configs, part.cores
    info.command = " ; ".join(commands)
    info.jobs = str(jobs) if jobs else ""
    info.runs = len(logs)


def run_table(info: RunInfo) -> str:
    """The Markdown table that says which run made the page."""
    command = info.command if info.runs > 1 else f"`{info.command}`"
    if info.runs > 1:
        command = f"{info.runs} runs: " + " ; ".join(f"`{c}`" for c in info.command.split(" ; "))
    rows = [
        ("date", info.date),
        ("command", command if info.command else "unknown"),
        ("config", " + ".join(f"`{c}`" for c in info.configs) or "unknown"),
        ("machine", info.machine + (f"; Snakemake given {info.cores} cores" if info.cores else "")),
        ("software", info.software or "unknown"),
    ]
    if info.wall_s:
        jobs = f"{info.jobs} jobs, " if info.jobs else ""
        rows.append(("run time", f"{jobs}{info.wall_s / 60:.1f} min wall (Snakemake's log)"))
    return "\n".join(["| run | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def rule_time_table(info: RunInfo) -> str:
    """Wall time per rule kind, as ``benchmarks/run_times.py`` prints it."""
    total = sum(sum(v) for v in info.rule_times.values()) or 1.0
    order = sorted(info.rule_times.items(), key=lambda kv: -sum(kv[1]))
    lines = [
        "| rule | jobs | job wall time, s | mean per job, s | share |",
        "|---|---|---|---|---|",
    ]
    for rule, times in order:
        s = sum(times)
        lines.append(
            f"| {rule} | {len(times)} | {s:,.0f} | {s / len(times):.1f} | {s / total:.0%} |"
        )
    return "\n".join(lines)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@dataclass
class Extras:
    """What a page shows beside the run: the study (its folder and run) and the agreement."""

    study: Path | None = None
    study_info: RunInfo = field(default_factory=RunInfo)
    agreement: str = ""
    more_agreements: list[str] = field(default_factory=list)
    # --keep-study: the study's sections of the page and its part of the README block, as the
    # last generation wrote them (from the study's own run, which did not change).
    kept_page: list[str] = field(default_factory=list)
    kept_block: list[str] = field(default_factory=list)


KEPT_HEADINGS = ("## Do the verdicts survive a change of machine?", "## The study's claims")
STUDY_LINE = "**The paper's claims, decided by the study**"
RUN_LINE = "**This run's claims**"


def keep_study(page: str, readme: str) -> Extras:
    """The study's sections of ``page`` and its part of ``readme``'s block, to write again.

    For a new demo run when the study's own run is not at hand but did not change (its
    config, merged, is the same): what the last generation wrote from it is copied unedited.
    Raises SystemExit, naming the file, when either holds no study part.
    """
    lines, kept, keeping = page.splitlines(), [], False
    for line in lines:
        if line.startswith("## "):
            keeping = line in KEPT_HEADINGS
        if keeping:
            kept.append(line)
    block = readme[readme.find(BEGIN) : readme.find(END)].splitlines()
    starts = [i for i, line in enumerate(block) if line.startswith(STUDY_LINE)]
    ends = [i for i, line in enumerate(block) if line.startswith(RUN_LINE)]
    if not kept or not starts or not ends or ends[0] < starts[0]:
        raise SystemExit(f"--keep-study: no study part in {PAGE} and {README}'s results block")
    while kept and not kept[-1].strip():
        kept.pop()
    part = block[starts[0] : ends[0]]
    while part and not part[-1].strip():
        part.pop()
    return Extras(kept_page=["", *kept], kept_block=["", *part])


def machine_words(info: RunInfo) -> str:
    """'AMD EPYC, 2 cores, AVX512 kernels' from what the run recorded ('' when unknown)."""
    if info.machine == "unknown":
        return ""
    words = [info.machine.split(" (")[0]]
    if info.cores:
        words.append(f"{info.cores} cores")
    if m := re.search(r"torch CPU kernels (\w+)", info.machine):
        words.append(f"{m.group(1)} kernels")
    return ", ".join(words)


def study_claims(extras: Extras) -> str:
    """The study's claims table (Markdown), or ''."""
    path = extras.study / "results" / "tables" / "claims.md" if extras.study else None
    return path.read_text(encoding="utf-8") if path and path.is_file() else ""


def extra_sections(extras: Extras) -> list[str]:
    """The page's sections of the agreement output and the study's claims."""
    if extras.kept_page and not extras.study:
        return list(extras.kept_page)
    out = []
    if extras.agreement:
        out += [
            "",
            "## Do the verdicts survive a change of machine?",
            "",
            "`benchmarks/claims_agreement.py` compared each run below with the same run on AVX2",
            "kernels ([claims.md](claims.md)); its output:",
        ]
        for text in (extras.agreement, *extras.more_agreements):
            out += ["", "```", text.strip(), "```"]
    if table := study_claims(extras):
        out += ["", "## The study's claims", "", "`make study` ([claims.md](claims.md)):", ""]
        out += [run_table(extras.study_info), "", embed(table)]
    return out


def build_page(
    run: Path,
    info: RunInfo,
    audit: tuple[str, str, str, int] | None,
    extras: Extras | None = None,
) -> str:
    """The text of docs/results.md."""
    extras = extras or Extras()
    found = [(h, run / "results" / f, how) for h, f, how in SECTIONS]
    out = [
        "# Results of a demo run",
        "",
        "<!-- Generated by docs/generate_results.py from a run's results/; do not edit. -->",
        "",
        "Every table on this page is copied unedited from the files one run of the pipeline",
        "wrote (`results/tables/*.md`, `results/craft/tables/*.md`), by",
        "`docs/generate_results.py`; regenerate it after a run with",
        "`make results-docs RUN=<the run's directory>`. The run:",
        "",
        run_table(info),
        "",
        *(MINIATURE_NOTE if "config/demo.yaml" in info.configs else ()),
        "How the tables' tests and the claims' verdicts are decided: [claims.md](claims.md).",
        "",
        "Contents: "
        + ", ".join(f"[{h}](#{anchor(h)})" for h, p, _ in found if p.is_file())
        + (", [Where a number came from](#where-a-number-came-from)" if audit else "")
        + (", [Time per rule kind](#time-per-rule-kind)" if info.rule_times else "")
        + ".",
    ]
    missing = [(h, how) for h, p, how in found if not p.is_file()]
    if missing:
        out += ["", "Not built in this run: " + "; ".join(f"{h} (`{how}`)" for h, how in missing)]
        out[-1] += " ([beyond.md](beyond.md))."
    for heading, path, _ in found:
        if path.is_file():
            out += ["", f"## {heading}", "", embed(path.read_text(encoding="utf-8"))]
    out += extra_sections(extras)
    if audit:
        row, col, text, code = audit
        out += [
            "",
            "## Where a number came from",
            "",
            f"`robustkd audit table1 --cell {row} {col}` on this run (exit status {code};",
            "[audit.md](audit.md) explains the output):",
            "",
            "```",
            text,
            "```",
        ]
    if info.rule_times:
        out += [
            "",
            "## Time per rule kind",
            "",
            "From Snakemake's log of the run (`benchmarks/run_times.py`): each job's wall time,",
            "summed per rule; jobs ran side by side on the cores given.",
            "",
            rule_time_table(info),
        ]
    shown = [f for f in FIGURES if (ROOT / "docs" / "demo" / f"{f}.png").is_file()]
    if shown:
        out += ["", "## Figures", ""]
        out += [f"![{f}](demo/{f}.png)\n" for f in shown]
    return "\n".join(out).rstrip() + "\n"


def claims_overview(csv: Path) -> str:
    """Verdict counts and the largest minimal detectable effect per source of a claims.csv."""
    import pandas as pd

    df = pd.read_csv(csv)
    verdicts = ("supported", "contradicted", "equivalent", "undecided")
    lines = [
        "| Source | claims | " + " | ".join(verdicts) + " | largest MDE (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, part in df.groupby("source", sort=False):
        counts = part["verdict"].value_counts()
        cells = " | ".join(str(int(counts.get(v, 0))) for v in verdicts)
        lines.append(f"| {source} | {len(part)} | {cells} | {part['mde'].max():.1f} |")
    return "\n".join(lines)


def build_block(run: Path, info: RunInfo, extras: Extras | None = None) -> str:
    """The README's results block: the study's claims, the agreement, the run's claims.

    Without a study, the run's Table 1 instead of the study's claims.
    """
    extras = extras or Extras()
    t1 = run / "results" / "tables" / "table1.md"
    claims = run / "results" / "tables" / "claims.md"
    configs = " + ".join(f"`{c}`" for c in info.configs) or "unknown config"
    lines = [
        BEGIN,
        f"From the run of {info.date} ({configs};",
        f"{machine_words(info) or 'unknown machine'}), generated by `docs/generate_results.py`;",
        "every table of that run is in [docs/results.md](docs/results.md).",
    ]
    agreement = [
        "",
        "The same claims again on AVX2 kernels (`benchmarks/claims_agreement.py`):",
        "",
        "```",
        extras.agreement.strip(),
        "```",
    ]
    study = study_claims(extras)
    if summary := claims_summary(study):
        took = extras.study_info.wall_s
        runs = extras.study_info.runs
        on = f"on {where}" if (where := machine_words(extras.study_info)) else "on the same cores"
        if runs > 1:  # the sum of runs that each built a part: not the cost of one study
            when = f", built in {runs} Snakemake runs {on}, {took / 60:.0f} min in all"
        else:
            when = f", {took / 60:.0f} min {on}" if took else ""
        csv = extras.study / "results" / "tables" / "claims.csv"
        lines += [
            "",
            f"**The paper's claims, decided by the study** (`make study`{when}; each claim:",
            f"[docs/results.md](docs/results.md#the-studys-claims)): {summary}",
            "",
            claims_overview(csv) if csv.is_file() else "",
            *(agreement if extras.agreement else ()),
        ]
    elif extras.kept_block:
        lines += extras.kept_block
    elif t1.is_file():
        lines += ["", embed(first_table(t1.read_text(encoding="utf-8")))]
    if claims.is_file() and (summary := claims_summary(claims.read_text(encoding="utf-8"))):
        text = claims.read_text(encoding="utf-8")
        early = " *Preliminary* (too few seeds)." if "*Preliminary verdicts" in text else ""
        lines += ["", f"**This run's claims** ([docs/claims.md](docs/claims.md)): {summary}{early}"]
        if extras.agreement and not study:
            lines += agreement
    return "\n".join([*lines, END])


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers (markers included) replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: no {BEGIN} ... {END} block to rewrite")
    return text[:start] + block + text[end + len(END) :]


def main() -> None:
    """Parse the arguments, read the run, write the page, the README block and the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="the run's working directory (holds results/)")
    p.add_argument("--cell", nargs=2, default=("noise-0.5", "ours"), metavar=("ROW", "COL"))
    p.add_argument("--no-audit", action="store_true", help="leave out the audit of one cell")
    p.add_argument("--no-figures", action="store_true", help="keep docs/demo/*.png as they are")
    p.add_argument("--study", type=Path, help="a finished `make study` folder (its results/)")
    p.add_argument(
        "--study-logs", type=Path, nargs="+", help="the Snakemake logs of every run of the study"
    )
    p.add_argument(
        "--agreement", type=Path, nargs="+", help="benchmarks/claims_agreement.py's outputs"
    )
    p.add_argument(
        "--keep-study",
        action="store_true",
        help="without --study: keep the study's sections of docs/results.md and its part of "
        "the README block as they are (the study's run is not at hand but did not change)",
    )
    args = p.parse_args()
    if args.keep_study and (args.study or args.agreement):
        p.error("--keep-study keeps the study and agreement as they are: give neither with it")
    texts = [path.read_text(encoding="utf-8") for path in args.agreement or ()]
    extras = Extras(agreement=texts[0] if texts else "", more_agreements=texts[1:])
    if args.keep_study:
        extras = keep_study(PAGE.read_text(encoding="utf-8"), README.read_text(encoding="utf-8"))
    if args.study:
        extras.study = args.study.resolve()
        if args.study_logs:
            combine_logs(args.study_logs, extras.study_info)
        elif log := table1_log(extras.study):
            read_log(log, extras.study_info)
        read_records(extras.study, extras.study_info)
    run = args.run.resolve()
    if not (run / "results" / "tables" / "table1.md").is_file():
        raise SystemExit(f"{run}: no results/tables/table1.md (run `snakemake all` there first)")
    info = RunInfo()
    if log := table1_log(run):
        read_log(log, info)
    read_records(run, info)
    if not args.no_figures:
        for name in FIGURES:
            src = run / "results" / "figures" / f"{name}.png"
            if src.is_file():
                shutil.copyfile(src, ROOT / "docs" / "demo" / f"{name}.png")
    audit = None
    if not args.no_audit:
        text, code = run_audit(run, *args.cell)
        if code == 2:  # bad input: the cell is not in this run's Table 1
            print(f"audit of {args.cell} not shown:\n{text}", file=sys.stderr)
        else:
            audit = (*args.cell, text.replace(str(run), "<run>"), code)
    PAGE.write_text(build_page(run, info, audit, extras), encoding="utf-8")
    block = build_block(run, info, extras)
    README.write_text(replace_block(README.read_text(encoding="utf-8"), block))
    print(f"wrote {PAGE.relative_to(ROOT)} and the results block of {README.name} from {run}")


if __name__ == "__main__":
    main()
