"""CRAFT-study training through the shared loop: every method resumes bit-identically; the
jobs and the report run end to end on a tiny dataset."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from robustkd.audit import audit
from robustkd.craft import layout
from robustkd.craft.jobs import corrupt_testset_job
from robustkd.craft.losses.craft import CraftConfig
from robustkd.craft.models import CIFAR_MEAN, CIFAR_STD, CifarResNet, create_cifar_model
from robustkd.craft.report.job import report_job
from robustkd.craft.student_job import student_job
from robustkd.craft.tasks import METHODS, create_task
from robustkd.craft.tasks.base import IndexedImages
from robustkd.craft.tasks.craft import CraftTask
from robustkd.craft.teacher_job import teacher_job
from robustkd.data import PreparedWriter
from robustkd.data.prepared import PreparedDataset
from robustkd.data.synthetic import draw_image
from robustkd.engine.checkpoint import load_checkpoint
from robustkd.engine.data import ViewConfig, load_image_set
from robustkd.engine.distill import Normalize
from robustkd.engine.loop import train
from robustkd.engine.optim import TrainConfig

OBJECTIVES = {
    "logitkd": {"temperature": 4.0, "lambda_kd": 1.0},
    "attentionkd": {"lambda_feat": 1.0, "layers": ["stage1", "stage2", "stage3"]},
    "crd": {"lambda_crd": 0.8, "feat_dim": 8, "nce_k": 6, "nce_t": 0.1, "nce_m": 0.5},
    "craft": {
        "views": 2,
        "layers": ["stage2", "stage3"],
        "temperature": 4.0,
        "tau": 0.1,
        "alpha": 10.0,
        "beta": 1.0,
        "gamma": 0.5,
        "lambda_kd": 1.0,
        "lambda_con": 1.0,
        "lambda_de": 1.0,
        "train_corruptions": ["gaussian_noise", "contrast", "pixelate"],
        "train_severities": [1, 3, 5],
    },
}


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    """A 4-class prepared dataset of 16x16 miniature-CIFAR images: 6 train, 2 test per class."""
    root = tmp_path_factory.mktemp("craft") / "cifar"
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]

    def split(n):
        labels = [i % 4 for i in range(n)]
        return np.stack([draw_image(rng, y, 4, 16) for y in labels]), labels

    with PreparedWriter(root, classes, provenance={"rule": "test"}) as w:
        w.add_array("train", *split(24))
        w.add_array("test", *split(8))
    return PreparedDataset(root)


class Interrupted(Exception):
    pass


class Interrupting:
    """Wrap a task; raise (as a kill would stop it) at the given loss call."""

    def __init__(self, task, at):
        self.task, self.model, self.at, self.calls = task, task.model, at, 0

    def loss(self, images, targets, generator):
        self.calls += 1
        if self.calls > self.at:
            raise Interrupted
        return self.task.loss(images, targets, generator)


def _run(method, prepared, run_dir, interrupt_at=None):
    torch.manual_seed(0)
    teacher = CifarResNet(8, 4, 4).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    images = load_image_set(
        prepared, "train", ViewConfig(16, crop_scale=(0.6, 1.0)), train=True, preload_size=16
    )
    torch.manual_seed(1)  # the student (and CRD's memory banks) from the run's seed
    student = CifarResNet(8, 4, 4)
    task = create_task(
        method,
        student,
        teacher,
        Normalize(CIFAR_MEAN, CIFAR_STD),
        OBJECTIVES.get(method, {}),
        train_labels=images.labels,
    )
    if interrupt_at is not None:
        task = Interrupting(task, interrupt_at)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, checkpoint_every=2, log_every=100)
    summary = train(
        task,
        IndexedImages(images.derive(seed=1)),
        cfg,
        seed=1,
        run_dir=run_dir,
        device=torch.device("cpu"),
    )
    return task.model, summary


@pytest.mark.parametrize("method", METHODS)
def test_every_method_resumes_bit_identically(method, tiny_cifar, tmp_path):
    full, summary = _run(method, tiny_cifar, tmp_path / "full")
    assert summary["steps"] == 6
    with pytest.raises(Interrupted):
        _run(method, tiny_cifar, tmp_path / "cut", interrupt_at=5)  # during step 5
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 4
    resumed, summary = _run(method, tiny_cifar, tmp_path / "cut")
    assert summary["resumed_from"] == 4
    state = resumed.state_dict()
    for k, v in full.state_dict().items():  # weights, BN statistics, CRD's banks
        assert torch.equal(state[k], v), f"{method}: {k} differs after resume"
    assert (tmp_path / "full" / "log.jsonl").read_text() == (
        tmp_path / "cut" / "log.jsonl"
    ).read_text()


def test_components_are_logged(tiny_cifar, tmp_path):
    _run("craft", tiny_cifar, tmp_path / "craft")
    row = json.loads((tmp_path / "craft" / "log.jsonl").read_text().splitlines()[0])
    assert {"loss", "ce", "kd", "con", "de", "reliability", "agree", "entropy"} <= set(row)
    _run("crd", tiny_cifar, tmp_path / "crd")
    row = json.loads((tmp_path / "crd" / "log.jsonl").read_text().splitlines()[0])
    assert {"loss", "ce", "crd", "crd_student", "crd_teacher"} <= set(row)


def test_craft_connects_students_of_another_width():
    teacher, student = CifarResNet(8, 8, 4), CifarResNet(8, 4, 4)
    task = CraftTask(
        student,
        teacher.eval(),
        Normalize(CIFAR_MEAN, CIFAR_STD),
        config=CraftConfig(views=1),
        layers=["stage3"],
        train_corruptions=["gaussian_noise"],
        train_severities=[1],
    )
    assert isinstance(task.connectors[0], torch.nn.Linear)
    assert task.connectors[0].weight.shape == (32, 16)
    out = task.loss(
        torch.rand(4, 3, 16, 16),
        torch.tensor([[0, 0], [1, 1], [2, 2], [3, 3]]),
        torch.Generator().manual_seed(0),
    )
    out["loss"].backward()
    assert task.connectors[0].weight.grad is not None
    assert task.teacher_views == 2


def test_unknown_method_and_bad_model_spec():
    with pytest.raises(ValueError, match="unknown CRAFT-study method"):
        create_task("kd", CifarResNet(8, 4), CifarResNet(8, 4), lambda x: x, {}, train_labels=[0])
    with pytest.raises(ValueError, match="6n \\+ 2"):
        create_cifar_model({"depth": 10}, 10)
    with pytest.raises(ValueError, match="unknown CIFAR model settings"):
        create_cifar_model({"depth": 8, "widht": 4}, 10)


def _config(tmp_path):
    train = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "log_every": 100}
    return {
        "seeds": [0, 1],
        "methods": {"craft": list(METHODS)},
        "craft": {
            "teacher": {"model": {"depth": 8, "width": 4}, "seed": 0, "train": train},
            "student": {"model": {"depth": 8, "width": 4}, "train": train},
            "views": {"size": 16, "crop_scale": [0.6, 1.0]},
            "objectives": {
                **OBJECTIVES,
                "craft": {
                    k: v
                    for k, v in OBJECTIVES["craft"].items()
                    if k not in ("train_corruptions", "train_severities")
                },
            },
            "corruptions": {
                "evaluate": ["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"],
                "severities": [1, 5],
                "craft_train": ["gaussian_noise", "contrast"],
                "craft_train_severities": [1, 2, 3],
                "seed": 0,
            },
            "evaluation": {"batch_size": 16, "alignment_images": 4},
        },
    }


def test_jobs_and_report_end_to_end(tiny_cifar, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # layout paths are relative: results/craft/...
    config = _config(tmp_path)
    craft = config["craft"]
    files = layout.cifar10c_files(config)
    corrupt_testset_job(
        data_dir=tiny_cifar.root,
        corruptions=craft["corruptions"]["evaluate"],
        severities=craft["corruptions"]["severities"],
        seed=0,
        outputs=files,
        labels_out=layout.cifar10c_labels(),
    )
    arr = np.load(files["contrast"])
    assert arr.shape == (16, 16, 16, 3) and arr.dtype == np.uint8  # 8 test images x 2 severities
    teacher = teacher_job(
        data_dir=tiny_cifar.root,
        craft=craft,
        cifar10c=files,
        cifar10c_labels=layout.cifar10c_labels(),
        out_weights=layout.teacher_files()["weights"],
        out_metrics=layout.teacher_files()["metrics"],
    )
    assert teacher["heldout_corruptions"] == ["defocus_blur", "jpeg_compression"]
    conditions = layout.eval_conditions(config)
    for method in METHODS:
        student_job(
            method=method,
            data_dir=tiny_cifar.root,
            teacher_weights=layout.teacher_files()["weights"],
            craft=craft,
            seeds=config["seeds"],
            outputs=[layout.student_files(method, s)["weights"] for s in config["seeds"]],
            eval_conditions=conditions,
            cifar10c=files,
            cifar10c_labels=layout.cifar10c_labels(),
        )
    m = json.loads(open(layout.student_files("craft", 1)["metrics"]).read())
    assert m["nan_count"] == 0 and m["seed"] == 1 and 0 <= m["robust_heldout"] <= 100
    assert m["robust_heldout"] == pytest.approx(
        np.mean(
            [m["corrupted"][c][s] for c in ("defocus_blur", "jpeg_compression") for s in ("1", "5")]
        )
    )
    assert m["cost"]["teacher_forward_images"] == 3 * 8 * 3  # 3 steps x 8 images x (M + 1)
    assert set(m["alignment"]) == {"clean"} | {f"{c}-{s}" for c in files for s in (1, 5)}
    report_job(config)
    for f in layout.study_outputs(config):
        assert (tmp_path / f).is_file(), f
    table = pd.read_csv(tmp_path / "results/craft/tables/craft_table.csv")
    assert set(table["row"]) == {*METHODS, "teacher"}
    md = (tmp_path / "results/craft/tables/craft_table.md").read_text()
    assert "Primary: Held-out Robust Acc" in md and "Defocus blur, JPEG" in md
    per = pd.read_csv(tmp_path / "results/craft/tables/craft_per_corruption.csv")
    assert (per["n"] == 2).all() and len(per) == 4 * len(METHODS)
    # Every cell of every table traces back to its runs, through their provenance.
    for table in layout.TABLES:
        result = audit(f"results/craft/tables/{table}.csv", root=tmp_path, echo=lambda _: None)
        assert result.ok, "\n".join(result.summary)
