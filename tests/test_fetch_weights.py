"""Hub weights reach offline compute nodes: fetched once, where Snakemake runs (issue 23).

With ``weights: hub`` rule fetch_weights (a local rule: the login node on a cluster) downloads a
backbone's pretrained weights once into ``results/weights/<backbone>/`` and records their sha256;
every job that needs them reads that file, a rule input. Here the hub is offline: a Hugging Face
cache filled with a small stand-in for the DINO weights (``HF_HUB_OFFLINE=1``,
``HF_HUB_CACHE``), so timm's own download code (``hf_hub_download``) runs, as on a login node.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import constants as hf_constants

from robustkd.config import load_config
from robustkd.errors import ConfigError
from robustkd.layout import fetched_weights
from robustkd.models import create_backbone
from robustkd.models.backbones import hub_url
from robustkd.models.fetch import fetch_weights_job
from robustkd.provenance import sha256_file
from tests import bounded
from tests.conftest import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
DINO = "vit_base_patch16_224.dino"
# The stand-in: DINO's architecture at 16 px, 2 blocks of width 32 (the weights a test hub holds).
SMALL = {"img_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
# Jobs that load the hub weights of the paper config, by rule: (backbone, which jobs).
CONSUMERS = {
    "distill": ("vit", lambda wc: True),
    "distill_ci": ("clip", lambda wc: True),
    "finetune": ("vit", lambda wc: wc["method"] == "supervised"),
    "finetune_fractions": ("vit", lambda wc: wc["method"] == "supervised"),
    "transfer": ("vit", lambda wc: wc["method"] == "supervised"),
    "attention_maps": ("vit", lambda wc: True),
}


def _jobs(text: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """(rule, wildcards, inputs) of every job of a Snakemake dry-run listing."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", text):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head:
            continue
        inputs = re.search(r"^    input: (.*)$", block, re.M)
        wildcards = re.search(r"^    wildcards: (.*)$", block, re.M)
        pairs = wildcards.group(1).split(", ") if wildcards else []
        jobs.append(
            (
                head.group(1),
                dict(p.split("=", 1) for p in pairs),
                inputs.group(1).split(", ") if inputs else [],
            )
        )
    return jobs


def _dry_run(workdir: Path, *configs: Path, targets=("all", "beyond", "craft")) -> list:
    cmd = [sys.executable, "-m", "snakemake", "-s", ROOT / "Snakefile", *targets]
    cmd += ["--dry-run", "--forceall", "--cores", "1"]
    if configs:
        cmd += ["--configfile", *configs]
    proc = bounded.run(cmd, what="Snakemake dry run", timeout=bounded.QUICK, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _jobs(proc.stdout + proc.stderr)


def test_paper_config_fetches_each_hub_backbone_once_for_all_its_jobs(tmp_path):
    jobs = _dry_run(tmp_path)  # config/config.yaml alone: vit and clip with weights: hub
    backbones = load_config(ROOT / "config/config.yaml")["backbones"]
    hub = sorted(b for b, spec in backbones.items() if spec["weights"] == "hub")
    assert hub == ["clip", "vit"]
    fetches = [(wc, inputs) for rule, wc, inputs in jobs if rule == "fetch_weights"]
    assert sorted(wc["backbone"] for wc, _ in fetches) == hub  # one job per hub backbone
    assert all(inputs == [] for _, inputs in fetches)  # it needs nothing: it downloads
    users: Counter[str] = Counter()
    for rule, wc, inputs in jobs:
        if rule in CONSUMERS and CONSUMERS[rule][1](wc):
            backbone = CONSUMERS[rule][0]
            assert fetched_weights(backbone)["weights"] in inputs, (rule, wc, inputs)
            users[backbone] += 1
    # Every DINO/CLIP job: 48 + 21 + 21 + 9 + 9 + 1 at the paper's settings.
    assert users["vit"] > 50 and users["clip"] > 10, users


def test_fetch_weights_is_a_local_rule():
    """On SLURM it runs where Snakemake runs (the login node, which has internet)."""
    rules = "\n".join(p.read_text() for p in sorted((ROOT / "workflow/rules").glob("*.smk")))
    local = re.findall(r"^localrules:\n((?:    \w+,?\n)+)", rules, re.M)
    assert "fetch_weights" in re.findall(r"\w+", "".join(local))


def test_a_given_weights_file_or_the_demo_needs_no_fetch(tmp_path):
    files = {b: tmp_path / f"{b}.safetensors" for b in ("vit", "clip")}
    for f in files.values():
        f.write_bytes(b"")
    overlay = tmp_path / "local.yaml"
    overlay.write_text(
        "backbones:\n" + "".join(f"  {b}: {{weights: {f}}}\n" for b, f in files.items())
    )
    jobs = _dry_run(tmp_path, overlay, targets=("all",))
    assert "fetch_weights" not in {rule for rule, _, _ in jobs}
    distill = [inputs for rule, _, inputs in jobs if rule == "distill"]
    assert distill and all(str(files["vit"]) in inputs for inputs in distill)
    demo = _dry_run(tmp_path, ROOT / "config/demo.yaml")  # pretrained teachers: no hub
    assert "fetch_weights" not in {rule for rule, _, _ in demo}


def _fill_hub(cache: Path, name: str, content: bytes | None = None) -> dict[str, torch.Tensor]:
    """Put ``name``'s hub weights (a random model of :data:`SMALL`, or ``content``) in the
    Hugging Face cache ``cache``, as ``hf_hub_download`` leaves them; return the state dict."""
    state = timm.create_model(name, pretrained=False, num_classes=0, **SMALL).state_dict()
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    folder, rev = cache / f"models--{repo.replace('/', '--')}", "0" * 40
    (folder / "snapshots" / rev).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)
    weights = folder / "snapshots" / rev / "model.safetensors"
    if content is None:
        safetensors.torch.save_file(state, weights)
    else:
        weights.write_bytes(content)
    return state


def test_fetch_rule_downloads_once_and_records_the_sha256(tmp_path):
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    hub = _fill_hub(tmp_path / "hf", DINO)
    overlay = work / "small_vit.yaml"  # the paper's vit (hub), at the stand-in's size
    overlay.write_text(f"backbones:\n  vit: {{kwargs: {json.dumps(SMALL)}}}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}
    target = fetched_weights("vit")
    cmd = [sys.executable, "-m", "snakemake", target["weights"], "--cores", "1"]
    cmd += ["--configfile", overlay]
    proc = bounded.run(cmd, what="rule fetch_weights", timeout=bounded.JOB, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    weights, record = work / target["weights"], json.loads((work / target["record"]).read_text())
    sha = sha256_file(weights)
    assert record["sha256"] == sha and record["outputs"] == {target["weights"]: sha}
    assert record["rule"] == "fetch_weights" and record["wildcards"] == {"backbone": "vit"}
    assert record["hub"] == {"timm_name": DINO, "url": hub_url(DINO)}
    assert "huggingface.co/timm/vit_base_patch16_224.dino" in record["hub"]["url"]
    # The file holds the hub's weights, and a job loads exactly those from it.
    spec = {"timm_name": DINO, "weights": str(weights), "kwargs": SMALL}
    for state in (safetensors.torch.load_file(weights), create_backbone(spec).state_dict()):
        assert state.keys() == hub.keys()
        assert all(torch.equal(state[k], hub[k]) for k in hub)
    # Once fetched, a distillation job reads the file and nothing fetches again.
    student = "results/distill/ours/mask-0.90/seed0/student.pth"
    cmd = [sys.executable, "-m", "snakemake", student, "--dry-run", "--cores", "1"]
    proc = bounded.run(
        cmd + ["--configfile", overlay], what="dry run", timeout=bounded.QUICK, cwd=work, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(proc.stdout + proc.stderr)
    assert [inputs for rule, _, inputs in jobs if rule == "distill"] == [
        ["results/data/imagenet100", target["weights"]]
    ]
    assert "fetch_weights" not in {rule for rule, _, _ in jobs}


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline (read at call time by huggingface_hub)."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize(
    ("download", "says"),
    [
        ("missing", "LocalEntryNotFoundError"),
        ("truncated", "SafetensorError"),
        ("another model", "size mismatch"),
    ],
)
def test_a_bad_download_names_the_backbone_and_the_url(offline_hub, tmp_path, download, says):
    if download == "truncated":
        _fill_hub(offline_hub, DINO, content=b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    elif download == "another model":
        other = timm.create_model(DINO, pretrained=False, num_classes=0, **{**SMALL, "depth": 1})
        other_state = {k: v.contiguous() for k, v in other.state_dict().items()}
        other_state["pos_embed"] = torch.zeros(1, 3, 32)  # and a wrong shape
        path = tmp_path / "other.safetensors"
        safetensors.torch.save_file(other_state, path)
        _fill_hub(offline_hub, DINO, content=path.read_bytes())
    spec = {"timm_name": DINO, "weights": "hub", "kwargs": SMALL}
    out, record = tmp_path / "w" / "model.safetensors", tmp_path / "w" / "provenance.json"
    with pytest.raises(ConfigError) as err:
        fetch_weights_job(backbone="vit", spec=spec, out=out, record=record)
    message = str(err.value)
    assert "backbone 'vit'" in message and says in message
    assert hub_url(DINO) in message and "timm/vit_base_patch16_224.dino" in message
    assert not out.exists() and not record.exists()


def test_only_hub_weights_are_fetched(tmp_path):
    with pytest.raises(ConfigError, match=r"backbones\.vit\.weights.*not 'hub'"):
        fetch_weights_job(
            backbone="vit",
            spec={"timm_name": DINO, "weights": "/models/dino.pth"},
            out=tmp_path / "model.safetensors",
            record=tmp_path / "provenance.json",
        )


def test_docs_say_how_weights_reach_offline_nodes():
    page = (ROOT / "docs" / "cluster.md").read_text()
    cluster = page.split("## 2. Weights", 1)[1].split("\n## ", 1)[0]
    for needed in ("fetch_weights", "results/weights/", "login node", "offline"):
        assert needed in cluster, f"docs/cluster.md's weights step does not say {needed!r}"
    assert "resnet101_clip.openai" in cluster and "CLIP RN101" in cluster
    assert DINO in cluster
