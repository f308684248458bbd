"""The stand-in teachers never see a label of the miniature ImageNet-100.

The teachers (the ViT standing in for DINO, the CNN standing in for CLIP) are pretrained with
labels on a corpus of other ImageNet classes (``data.pretrain_corpus``). These tests read what
the pretraining jobs consumed (Snakemake's record of each job's inputs and the job's own
``provenance.json``) and prove that none of it names a target class or holds a target image.
"""

import base64
import csv
import hashlib
import json
from pathlib import Path

import pytest

from robustkd.data.imagenet100 import prepare, write_demo_raw
from robustkd.data.imagenet_classes import read_class_list
from robustkd.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _snakemake_record(workdir: Path, output: str) -> dict:
    """Snakemake's metadata record of the job that wrote ``output`` (its inputs, rule)."""
    name = base64.urlsafe_b64encode(output.encode()).decode()
    return json.loads((workdir / ".snakemake" / "metadata" / name).read_text())


@pytest.mark.e2e
@pytest.mark.parametrize("backbone", ["vit", "clip"])
def test_teacher_pretraining_used_no_target_label(tiny_run, backbone):
    work = tiny_run
    target_dir = work / "results/data/imagenet100"
    corpus_dir = work / "results/data/pretrain_corpus"
    targets = set((target_dir / "classes.txt").read_text().split())
    cmc = set(read_class_list(work / "config/imagenet100.txt"))
    assert targets and targets <= cmc

    # What the job consumed, by Snakemake's record and by the job's own provenance.
    record = _snakemake_record(work, f"results/teachers/{backbone}/seed0/model.pth")
    assert record["rule"] == "pretrain_backbone"
    assert record["input"] == ["results/data/pretrain_corpus"]
    prov = json.loads((work / f"results/teachers/{backbone}/seed0/provenance.json").read_text())
    assert prov["rule"] == "pretrain_backbone"
    assert list(prov["inputs"]) == ["results/data/pretrain_corpus/manifest.csv"]
    manifest_sha = hashlib.sha256((corpus_dir / "manifest.csv").read_bytes()).hexdigest()
    assert prov["inputs"]["results/data/pretrain_corpus/manifest.csv"] == manifest_sha

    # That corpus: no class of ImageNet-100 (the full CMC list, not only the miniature's 4),
    # no image that is also a target image, labels only of its own classes.
    corpus_classes = (corpus_dir / "classes.txt").read_text().split()
    assert corpus_classes and not set(corpus_classes) & cmc
    corpus_rows = _manifest(corpus_dir)
    target_rows = _manifest(target_dir)
    assert {int(r["label"]) for r in corpus_rows} == set(range(len(corpus_classes)))
    assert not {r["sha256"] for r in corpus_rows} & {r["sha256"] for r in target_rows}
    assert not {Path(r["path"]).parent.name for r in corpus_rows} & cmc
    # The preparation was told to refuse every ImageNet-100 class.
    corpus_prov = json.loads((corpus_dir / "provenance.json").read_text())
    assert corpus_prov["rule"] == "prepare_pretrain_corpus"
    assert set(corpus_prov["excluded_classes"]) == cmc
    assert "config/imagenet100.txt" in corpus_prov["inputs"]


def test_corpus_reader_refuses_a_target_class(tmp_path, class_list):
    raw = tmp_path / "raw"
    write_demo_raw(
        raw, seed=0, class_list=class_list, n_classes=2, train_per_class=1, val_per_class=1
    )
    with pytest.raises(DataError, match="must not contain"):
        prepare(
            raw, tmp_path / "out", class_list=class_list, n_classes=2, exclude_class_list=class_list
        )
    assert not (tmp_path / "out").exists()


def test_demo_raw_refuses_other_classes_that_are_targets(tmp_path, class_list):
    with pytest.raises(DataError, match="also target classes"):
        write_demo_raw(
            tmp_path,
            seed=0,
            class_list=class_list,
            n_classes=3,
            other_classes=2,
            other_class_list=class_list,
            train_per_class=1,
            val_per_class=1,
        )


def test_corpus_is_prepared_from_the_same_tree(tmp_path, class_list):
    corpus_list = ROOT / "config" / "pretrain_corpus.txt"
    raw = tmp_path / "raw"
    write_demo_raw(
        raw,
        seed=0,
        class_list=class_list,
        n_classes=2,
        train_per_class=2,
        val_per_class=1,
        other_classes=3,
        other_class_list=corpus_list,
        other_train_per_class=4,
        other_val_per_class=2,
    )
    targets = prepare(raw, tmp_path / "targets", class_list=class_list, n_classes=2)
    corpus = prepare(
        raw, tmp_path / "corpus", class_list=corpus_list, n_classes=3, exclude_class_list=class_list
    )
    t_rows, c_rows = _manifest(targets), _manifest(corpus)
    assert [r["split"] for r in t_rows].count("train") == 2 * 2
    assert [r["split"] for r in c_rows].count("train") == 3 * 4
    assert [r["split"] for r in c_rows].count("val") == 3 * 2
    assert (corpus / "classes.txt").read_text().split() == sorted(read_class_list(corpus_list, 3))
    assert not {r["sha256"] for r in t_rows} & {r["sha256"] for r in c_rows}
