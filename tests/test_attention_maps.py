"""Fig 4's attention maps: the job (tiny ViTs, a tiny prepared set) and the figure's reader."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustkd.data import PreparedWriter
from robustkd.engine.attention import MAPS, attention_grid, attention_maps_job
from robustkd.engine.checkpoint import save_weights
from robustkd.engine.finetune import Classifier
from robustkd.models.backbones import create_backbone
from robustkd.report.figures import severity_label
from robustkd.report.paper import fig4_panels

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "timm_name": "vit_tiny_patch16_224",
    "weights": None,
    "kwargs": {"img_size": 16, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3},
}
DISTORTIONS = [{"family": "mask", "p": 0.5}, {"family": "blur", "kernel": 3, "sigma": 1.0}]


def test_attention_grid_is_a_distribution_over_patches():
    torch.manual_seed(0)
    vit = create_backbone(TINY)
    grid = attention_grid(vit, torch.randn(3, 16, 16))
    assert grid.shape == (4, 4) and grid.dtype == np.float32
    assert grid.sum() == pytest.approx(1.0, abs=1e-5) and (grid > 0).all()


@pytest.fixture
def job_inputs(tmp_path):
    """A prepared 2-class set of 16 px images, a teacher, students and classifiers."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    with PreparedWriter(data, ["a", "b"], provenance={"rule": "test"}) as w:
        w.add_array("train", rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), [0, 1] * 2)
        w.add_array("val", rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), [0, 1] * 2)
    torch.manual_seed(0)
    paths = {"teacher": tmp_path / "teacher.pth", "ours": [], "supervised": []}
    save_weights(paths["teacher"], create_backbone(TINY))
    for i in range(len(DISTORTIONS)):
        paths["ours"].append(tmp_path / f"student{i}.pth")
        save_weights(paths["ours"][-1], create_backbone(TINY))
        paths["supervised"].append(tmp_path / f"model{i}.pth")
        save_weights(paths["supervised"][-1], Classifier(create_backbone(TINY), 2))
    return data, paths


def test_job_writes_the_figure_arrays_and_provenance(tmp_path, job_inputs):
    data, paths = job_inputs
    out = tmp_path / "eval" / "attention.npz"
    # The workflow's spec of a stand-in teacher names the pattern of its per-seed files; the
    # job loads the one file it is given (Fig 4's seed).
    backbone = {**TINY, "weights": "results/teachers/vit/seed*/model.pth"}
    attention_maps_job(
        backbone=backbone,
        teacher=[paths["teacher"]],
        ours=paths["ours"],
        supervised=paths["supervised"],
        distortions=DISTORTIONS,
        data_dir=data,
        views={},
        images=3,
        seed=0,
        out=out,
    )
    with np.load(out, allow_pickle=False) as npz:
        assert npz["clean"].shape == (3, 16, 16, 3) and npz["clean"].dtype == np.float32
        assert npz["distorted"].shape == (2, 3, 16, 16, 3)
        assert npz["attention"].shape == (2, 3, len(MAPS), 4, 4)
        assert npz["attention"].dtype == np.float32
        np.testing.assert_allclose(npz["attention"].sum(axis=(-2, -1)), 1.0, rtol=1e-5)
        assert [json.loads(d) for d in npz["distortions"]] == DISTORTIONS
        # The teacher sees the same clean images in every row: the same map.
        np.testing.assert_array_equal(npz["attention"][0, :, 0], npz["attention"][1, :, 0])
        attention = npz["attention"]
    prov = json.loads((out.parent / "provenance.json").read_text())
    assert prov["rule"] == "attention_maps" and prov["seed"] == 0
    assert set(prov["outputs"]) == {str(out)}
    assert str(data / "manifest.csv") in prov["inputs"] and str(paths["teacher"]) in prov["inputs"]
    assert {str(p) for p in paths["ours"] + paths["supervised"]} <= set(prov["inputs"])
    assert prov["config"]["backbone"]["weights"] == str(paths["teacher"])

    panels = fig4_panels(out)
    assert len(panels) == 2 * 3
    assert [p.family_label for p in panels[::3]] == [
        f"Random Mask {severity_label(DISTORTIONS[0])}",
        f"Gaussian Blur {severity_label(DISTORTIONS[1])}",
    ]
    assert list(panels[0].maps) == ["Teacher (clean)", "Ours (distorted)", "Supervised (distorted)"]
    np.testing.assert_array_equal(panels[4].maps["Ours (distorted)"], attention[1, 1, 1])
    assert panels[4].clean.shape == panels[4].distorted.shape == (16, 16, 3)


def _rule(smk: str, name: str) -> str:
    text = (ROOT / "workflow" / "rules" / smk).read_text()
    start = text.index(f"rule {name}:")
    end = text.find("\nrule ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_figure_rule_reads_only_the_maps_file():
    """make_fig4 draws from the job's file: no model, no data; the job has the usual anatomy."""
    draw = _rule("report.smk", "make_fig4")
    inputs = draw.split("input:", 1)[1].split("output:", 1)[0].split()
    assert inputs == ["npz=FIG4_ATTENTION,"]
    job = _rule("evaluate.smk", "attention_maps")
    for part in ("unpack(get_fig4_inputs)", "npz=FIG4_ATTENTION", "log:", "resources:", "params:"):
        assert part in job, part
