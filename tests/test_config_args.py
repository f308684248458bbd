"""Values given with Snakemake's --config are typed as the schema says (issue 26, point 8).

Snakemake passes the values inside lists and mappings of ``--config`` as strings
(``--config seeds=[0]`` gives ``["0"]``), which the schema refused: ``'0' is not of type
'integer'``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from snakemake.cli import parse_config

from robustkd.config import load_config, merge_configs, validate_config
from tests.conftest import ROOT, copy_workflow

SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
OVERLAYS = ["config/demo.yaml", "config/tiny.yaml"]


@pytest.fixture
def demo():
    return load_config(ROOT / "config" / "config.yaml", *(ROOT / o for o in OVERLAYS))


def _given(*entries: str) -> dict:
    """What Snakemake makes of ``--config ENTRY ...`` (its own parser)."""
    return parse_config(list(entries))


def test_values_inside_lists_and_mappings_are_typed_by_the_schema(demo):
    from robustkd.config_args import coerce_config

    given = _given(
        "seeds=[0, 1]",
        "distortions={mask-0.9: {family: mask, p: 0.9}, blur-9: {family: blur, kernel: 9, "
        "sigma: 2.5}}",
        "training={distill: {amp: true, lr: 1e-3, clip_grad: null, epochs: 2}}",
    )
    assert given["seeds"] == ["0", "1"]  # what Snakemake passes on
    config = merge_configs(demo, given)
    changed = coerce_config(config, SCHEMA, given)
    assert config["seeds"] == [0, 1]
    assert config["distortions"]["mask-0.9"] == {"family": "mask", "p": 0.9}  # its family's p
    assert config["distortions"]["blur-9"] == {"family": "blur", "kernel": 9, "sigma": 2.5}
    distill = config["training"]["distill"]
    assert (distill["amp"], distill["lr"], distill["clip_grad"], distill["epochs"]) == (
        True,
        0.001,
        None,
        2,
    )
    assert "seeds.0" in changed and "distortions.mask-0.9.p" in changed
    validate_config(config, ROOT / "config" / "schema.yaml")


def test_strings_the_schema_allows_and_values_from_files_stay_strings(demo):
    from robustkd.config_args import coerce_config

    given = _given("data={datasets: {cifar10: {root: 2024}}}", "jobs={seeds_per_job: one}")
    config = merge_configs(demo, given)
    config["backbones"]["vit"]["kwargs"] = {"drop_rate": "0.1"}  # no type in the schema
    demo_seeds = list(config["seeds"])
    config["seeds"] = [str(s) for s in demo_seeds]  # as if quoted in a YAML file
    assert coerce_config(config, SCHEMA, given) == []
    assert config["data"]["datasets"]["cifar10"]["root"] == "2024"  # a path: a string
    assert config["backbones"]["vit"]["kwargs"] == {"drop_rate": "0.1"}
    assert config["seeds"] == [str(s) for s in demo_seeds]  # not given with --config


def test_what_is_still_wrong_says_to_use_an_overlay_file():
    from robustkd.config_args import config_hint

    given = _given("seeds=[zero]")
    msg = "config key 'seeds.0': 'zero' is not of type 'integer'"
    hint = config_hint(msg, given)
    assert "'seeds' was given with --config" in hint and "overlay file" in hint
    assert config_hint("config key 'methods.0': ...", given) == ""


def _dry_run(work, *config):
    cmd = [sys.executable, "-m", "snakemake", "all", "--dry-run", "--cores", "1"]
    cmd += ["--configfile", *OVERLAYS, "--config", *config]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300, check=False)


def test_snakemake_dry_run_with_config_on_the_command_line(tmp_path):
    work = copy_workflow(tmp_path)
    proc = _dry_run(work, "seeds=[0, 1]", "distortions={mask-0.9: {family: mask, p: 0.9}}")
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-3000:]
    assert "This was a dry-run" in said
    proc = _dry_run(work, "seeds=[zero]")
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'seeds.0': 'zero' is not of type 'integer'" in said
    assert "write it in an overlay file given with --configfile" in said
