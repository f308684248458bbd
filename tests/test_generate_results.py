"""docs/generate_results.py: the README block and the page carry the run's own text."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "generate_results.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules["gen"] = gen  # dataclasses look their module up
_spec.loader.exec_module(gen)

TABLE1 = "| Method | mask |\n|---|---|\n| Ours | 51.2 ± 0.4 |\n"
DEMO_CLAIMS = (
    "**The main paper's claims, tested on this run**\n\n"
    "*Preliminary verdicts: this run has too few seeds to decide most claims. The decisive "
    "table is that of `make study`, written to `study/results/tables/claims.md`.*\n\n"
    "64 claims: 1 supported, 0 contradicted, 0 equivalent (no difference of 2 points or more), "
    "63 undecided at this size (n = 3 seeds; every verdict at family-wise error 0.05, Holm).\n"
)
STUDY_CLAIMS = (
    "**The main paper's claims, tested on this run**\n\n"
    "34 claims: 7 supported, 2 contradicted, 3 equivalent (no difference of 2 points or more), "
    "22 undecided at this size (n = 10 seeds; every verdict at family-wise error 0.05, Holm).\n"
)


CSV = (
    "claim,source,verdict,mde\n"
    "t1/a,Table 1,supported,2.2\n"
    "t1/b,Table 1,equivalent,4.0\n"
    "f2/a,Fig 2,undecided,7.7\n"
)


def _run(root: Path, claims: str, csv: str = "") -> Path:
    tables = root / "results" / "tables"
    tables.mkdir(parents=True)
    (tables / "table1.md").write_text(TABLE1)
    (tables / "claims.md").write_text(claims)
    if csv:
        (tables / "claims.csv").write_text(csv)
    return root


def test_the_block_shows_the_study_the_agreement_and_that_the_demo_is_preliminary(tmp_path):
    run = _run(tmp_path / "demo", DEMO_CLAIMS)
    study = _run(tmp_path / "study", STUDY_CLAIMS, CSV)
    info = gen.RunInfo(wall_s=3000.0)
    extras = gen.Extras(
        study=study,
        study_info=info,
        agreement="same verdict: 33 of 34 (97.1 %)\n",
        more_agreements=["same verdict: 64 of 64 (100.0 %)\n"],
    )
    block = gen.build_block(run, gen.RunInfo(), extras)
    assert block.startswith(gen.BEGIN) and block.endswith(gen.END)
    assert "(`make study`, 50 min on the same cores; each claim:" in block  # machine unknown
    assert "): 34 claims: 7 supported" in block
    # The overview counts each source's verdicts and gives its largest MDE.
    assert "| Table 1 | 2 | 1 | 0 | 1 | 0 | 4.0 |" in block
    assert "| Fig 2 | 1 | 0 | 0 | 0 | 1 | 7.7 |" in block
    assert "```\nsame verdict: 33 of 34 (97.1 %)\n```" in block
    assert block.index("same verdict") < block.index("**This run's claims**")
    assert "64 claims: 1 supported" in block and "*Preliminary* (too few seeds)." in block
    assert "| Ours | 51.2 ± 0.4 |" not in block  # Table 1 is on the page
    page = gen.build_page(run, gen.RunInfo(), None, extras)
    assert "## Do the verdicts survive a change of machine?" in page
    assert "same verdict: 33 of 34" in page and "same verdict: 64 of 64" in page
    assert "same verdict: 64 of 64" not in block  # the README shows the first only
    assert "## The study's claims" in page and "n = 10 seeds" in page
    assert "| Ours | 51.2 ± 0.4 |" in page
    # A study built by several runs says so: their sum is not the cost of one study.
    machine = "AMD EPYC (x86_64), no GPU, torch CPU kernels AVX512, 1 torch thread(s) per job"
    info = gen.RunInfo(wall_s=4980.0, runs=3, machine=machine, cores="2")
    block = gen.build_block(run, gen.RunInfo(), gen.Extras(study=study, study_info=info))
    where = "on AMD EPYC, 2 cores, AVX512 kernels"
    assert f"(`make study`, built in 3 Snakemake runs {where}, 83 min in all;" in block


def test_keep_study_writes_the_studys_parts_again_around_a_new_run(tmp_path):
    old_run = _run(tmp_path / "old", DEMO_CLAIMS)
    study = _run(tmp_path / "study", STUDY_CLAIMS, CSV)
    extras = gen.Extras(study=study, agreement="same verdict: 33 of 34 (97.1 %)\n")
    page = gen.build_page(old_run, gen.RunInfo(), None, extras)
    readme = "# x\n\n" + gen.build_block(old_run, gen.RunInfo(), extras) + "\n\n## More\n"
    kept = gen.keep_study(page, readme)
    new_claims = DEMO_CLAIMS.replace("1 supported, 0 contradicted", "0 supported, 1 contradicted")
    new_run = _run(tmp_path / "new", new_claims)
    (new_run / "results" / "tables" / "table1.md").write_text(TABLE1.replace("51.2", "48.0"))
    new_page = gen.build_page(new_run, gen.RunInfo(date="2026-12-08"), None, kept)
    new_block = gen.build_block(new_run, gen.RunInfo(date="2026-12-08"), kept)
    # The study's sections and block part are the old ones, to the character; the run's are new.
    for heading in gen.KEPT_HEADINGS:
        section = page[page.index(heading) :].split("\n## ")[0]
        assert section in new_page
    study_part = readme[readme.index(gen.STUDY_LINE) : readme.index(gen.RUN_LINE)]
    assert study_part in new_block
    assert "| Ours | 48.0 ± 0.4 |" in new_page and "51.2" not in new_page
    assert "64 claims: 0 supported, 1 contradicted" in new_block
    assert "From the run of 2026-12-08" in new_block
    assert new_block.index(gen.STUDY_LINE) < new_block.index(gen.RUN_LINE)


def test_keep_study_refuses_a_page_without_a_study(tmp_path):
    run = _run(tmp_path / "demo", DEMO_CLAIMS)
    page = gen.build_page(run, gen.RunInfo(), None)
    readme = gen.build_block(run, gen.RunInfo())
    with pytest.raises(SystemExit, match="--keep-study: no study part"):
        gen.keep_study(page, readme)


def test_without_a_study_the_block_shows_table1_and_the_runs_claims(tmp_path):
    run = _run(tmp_path / "demo", STUDY_CLAIMS)
    block = gen.build_block(run, gen.RunInfo())
    assert "| Ours | 51.2 ± 0.4 |" in block and "34 claims: 7 supported" in block
    assert "Preliminary" not in block and "decided by the study" not in block
    assert "```" not in block


def test_the_run_table_gives_the_command_as_typed(tmp_path, monkeypatch):
    log = tmp_path / "x.snakemake.log"
    log.write_text(
        "Command: /v/bin/snakemake all --cores 2 --scheduler greedy --configfile "
        "/c/config/demo.yaml\nBase directory: /c\nProvided cores: 2\n"
    )

    class Times:
        @staticmethod
        def parse(path):
            return {}, 0, 0.0

    monkeypatch.setattr(gen, "load_run_times", lambda: Times)
    info = gen.RunInfo()
    gen.read_log(log, info)
    assert (
        info.command == "snakemake all --cores 2 --scheduler greedy --configfile config/demo.yaml"
    )
    assert info.configs == ["config/config.yaml", "config/demo.yaml"]


def test_a_study_built_by_two_runs_lists_both_commands_and_adds_their_times(tmp_path, monkeypatch):
    logs = []
    for i, (seeds_file, jobs) in enumerate([("config/study.yaml", 89), ("/x/more.yaml", 70)]):
        log = tmp_path / f"{i}.snakemake.log"
        log.write_text(
            f"Command: /v/bin/snakemake study --cores 2 --configfile /c/config/demo.yaml "
            f"/c/{seeds_file}\nBase directory: /c\nProvided cores: 2\ntotal {jobs}\n"
        )
        logs.append(log)

    class Times:
        @staticmethod
        def parse(path):
            wall = {"0.snakemake.log": 600.0, "1.snakemake.log": 300.0}[Path(path).name]
            return {"finetune": [wall / 2], "distill": [wall / 4]}, 0, wall

    monkeypatch.setattr(gen, "load_run_times", lambda: Times)
    info = gen.RunInfo()
    gen.combine_logs(logs, info)
    assert info.wall_s == 900.0 and info.jobs == "159" and info.runs == 2
    assert info.rule_times == {"finetune": [300.0, 150.0], "distill": [150.0, 75.0]}
    table = gen.run_table(info)
    assert "2 runs: `snakemake study --cores 2 --configfile config/demo.yaml" in table
    assert "(10.0 min)` ; `snakemake study" in table and "(5.0 min)`" in table
    assert "159 jobs, 15.0 min wall" in table
