"""Miniature raw data only for datasets whose root is the miniature's folder (issue 26 D)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robustkd.config import load_config, merge_configs
from robustkd.dagpaths import dry_run
from robustkd.data.imagenet100 import write_demo_raw
from robustkd.data.imagenet_classes import read_class_list
from robustkd.datasources import demo_raw_spec, raw_input, uses_demo_raw, writes_demo_raw

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("imagenet100", "cifar10", "cifar100", "stl10", "resisc45", "camelyon17")


@pytest.fixture(scope="module")
def demo() -> dict:
    return load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")


def _real_roots(tmp_path: Path) -> dict:
    """An overlay: CIFAR-10 and ImageNet-100 (a custom list sharing a class with the corpus's)
    from real data; the corpus still from the miniature."""
    corpus = read_class_list(ROOT / "config" / "pretrain_corpus.txt")
    custom = tmp_path / "my100.txt"
    targets = read_class_list(ROOT / "config" / "imagenet100.txt")[:9]
    custom.write_text("".join(f"{w}\n" for w in [corpus[0], *targets]))
    return {
        "data": {
            "datasets": {
                "cifar10": {"root": str(tmp_path / "real" / "cifar10")},
                "imagenet100": {
                    "root": str(tmp_path / "real" / "ilsvrc"),
                    "class_list": str(custom),
                },
            }
        }
    }


def test_the_demo_writes_every_miniature_as_before(demo):
    for dataset in DATASETS:
        assert writes_demo_raw(demo, dataset)
        assert raw_input(demo, dataset) == [f"results/raw_demo/{dataset}"]
    assert raw_input(demo, "imagenet100", corpus=True) == ["results/raw_demo/imagenet100"]
    spec = demo_raw_spec(demo, "imagenet100")
    assert spec == {
        **demo["demo_raw"]["imagenet100"],
        "class_list": "config/imagenet100.txt",
        "n_classes": 10,
        "other_class_list": "config/pretrain_corpus.txt",
        "other_classes": 20,
    }
    assert demo_raw_spec(demo, "cifar10") == demo["demo_raw"]["cifar10"]


def test_roots_naming_the_miniature_folder_otherwise_still_use_it(demo, tmp_path):
    for root in ("./results/raw_demo/cifar10", str(tmp_path / "results/raw_demo/cifar10")):
        cfg = merge_configs(demo, {"data": {"datasets": {"cifar10": {"root": root}}}})
        assert uses_demo_raw(cfg, "cifar10", workdir=tmp_path)
    off = merge_configs(demo, {"demo_raw": {"enabled": False}})
    assert not any(writes_demo_raw(off, d) for d in DATASETS)


def test_a_dataset_on_real_data_gets_no_miniature(demo, tmp_path):
    cfg = merge_configs(demo, _real_roots(tmp_path))
    assert not writes_demo_raw(cfg, "cifar10") and raw_input(cfg, "cifar10") == []
    assert raw_input(cfg, "imagenet100") == []  # prepared from the real tree
    # ImageNet's miniature folder still holds the corpus, and only the corpus.
    assert writes_demo_raw(cfg, "imagenet100")
    assert raw_input(cfg, "imagenet100", corpus=True) == ["results/raw_demo/imagenet100"]
    spec = demo_raw_spec(cfg, "imagenet100")
    assert spec["n_classes"] == 0 and spec["other_classes"] == 20
    # The custom list shares a class with the corpus: writing its targets would fail.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        small = dict.fromkeys(["train_per_class", "val_per_class"], 1)
        small.update(other_train_per_class=1, other_val_per_class=1, size=8)
        files = write_demo_raw(tmp_path / "mini", seed=0, **{**spec, **small})
    corpus = set(read_class_list(ROOT / "config" / "pretrain_corpus.txt"))
    assert {p.parent.name for p in files if p.parent.parent.name == "train"} == corpus


def test_the_dag_writes_no_miniature_for_real_data(tmp_path):
    overlay = tmp_path / "real.yaml"
    overlay.write_text(yaml.safe_dump(_real_roots(tmp_path)))
    jobs = dry_run(
        ["results/data/cifar10", "results/data/imagenet100", "results/data/pretrain_corpus"],
        [ROOT / "config" / "demo.yaml", overlay],
        snakefile=ROOT / "Snakefile",
        workdir=tmp_path,
    )
    miniatures = sorted(j.wildcards["dataset"] for j in jobs if j.rule == "demo_raw")
    assert miniatures == ["imagenet100"]  # the corpus's; none for CIFAR-10
    rules = {j.rule for j in jobs}
    assert {"prepare_cifar10", "prepare_imagenet100", "prepare_pretrain_corpus"} <= rules
