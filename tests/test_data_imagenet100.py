import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from robustkd.data import PreparedDataset
from robustkd.data.imagenet100 import prepare, write_demo_raw
from robustkd.data.imagenet_classes import read_class_list
from robustkd.errors import DataError

N_CLASSES, TRAIN, VAL = 4, 5, 3


@pytest.fixture(scope="module")
def raw(tmp_path_factory, class_list=None):
    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("ilsvrc")
    write_demo_raw(
        root,
        seed=3,
        class_list=ROOT / "config" / "imagenet100.txt",
        n_classes=N_CLASSES,
        train_per_class=TRAIN,
        val_per_class=VAL,
        size=24,
    )
    return root


def _copy(raw, tmp_path):
    dst = tmp_path / "raw"
    shutil.copytree(raw, dst)
    return dst


def test_miniature_layout_is_ilsvrc(raw, class_list):
    wnids = read_class_list(class_list, N_CLASSES)
    for w in wnids:
        assert len(list((raw / "train" / w).glob(f"{w}_*.JPEG"))) == TRAIN
    val = sorted((raw / "val").glob("ILSVRC2012_val_*.JPEG"))
    assert len(val) == (N_CLASSES + 2) * VAL  # + the two non-CMC classes
    with open(raw / "LOC_val_solution.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["ImageId"] for r in rows} == {p.stem for p in val}


def test_prepare_counts_classes_and_links(raw, tmp_path, class_list):
    out = prepare(raw, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    ds = PreparedDataset(out)
    wnids = read_class_list(class_list, N_CLASSES)
    assert ds.classes == sorted(wnids)
    assert len(ds.indices("train")) == N_CLASSES * TRAIN
    assert len(ds.indices("val")) == N_CLASSES * VAL
    assert np.bincount(ds.labels("val")).tolist() == [VAL] * N_CLASSES
    first = out / ds.rows[0].path
    assert first.is_symlink() and first.resolve().is_relative_to(raw.resolve())


def test_labels_round_trip_from_label_file(raw, tmp_path, class_list):
    """A val image is labelled with the wnid LOC_val_solution.csv gives it, by sorted wnid."""
    out = prepare(raw, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    ds = PreparedDataset(out)
    with open(raw / "LOC_val_solution.csv") as fh:
        truth = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(fh)}
    for i in ds.indices("val"):
        row = ds.rows[i]
        image_id = row.path.rsplit("/", 1)[1].removesuffix(".JPEG")
        assert ds.classes[row.label] == truth[image_id]
        assert row.path.split("/")[2] == truth[image_id]


def test_val_in_wnid_folders(raw, tmp_path, class_list):
    """The same val set, already sorted into wnid folders, prepares to the same labels."""
    root = _copy(raw, tmp_path)
    with open(root / "LOC_val_solution.csv") as fh:
        truth = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(fh)}
    for p in (root / "val").glob("*.JPEG"):
        (root / "val" / truth[p.stem]).mkdir(exist_ok=True)
        p.rename(root / "val" / truth[p.stem] / p.name)
    (root / "LOC_val_solution.csv").unlink()
    a = PreparedDataset(prepare(raw, tmp_path / "a", class_list=class_list, n_classes=N_CLASSES))
    b = PreparedDataset(prepare(root, tmp_path / "b", class_list=class_list, n_classes=N_CLASSES))
    assert sorted(r.sha256 + str(r.label) for r in a.rows) == sorted(
        r.sha256 + str(r.label) for r in b.rows
    )


def test_kaggle_layout(raw, tmp_path, class_list):
    root = tmp_path / "kaggle"
    shutil.copytree(raw / "train", root / "ILSVRC" / "Data" / "CLS-LOC" / "train")
    shutil.copytree(raw / "val", root / "ILSVRC" / "Data" / "CLS-LOC" / "val")
    shutil.copy(raw / "LOC_val_solution.csv", root)
    ds = PreparedDataset(prepare(root, tmp_path / "p", class_list=class_list, n_classes=N_CLASSES))
    assert len(ds.indices("val")) == N_CLASSES * VAL


def test_missing_root(tmp_path, class_list):
    with pytest.raises(DataError, match="nowhere: no ILSVRC-2012.*cannot be downloaded"):
        prepare(tmp_path / "nowhere", tmp_path / "prep", class_list=class_list)
    assert not (tmp_path / "prep").exists()


def test_missing_class_folder(raw, tmp_path, class_list):
    root = _copy(raw, tmp_path)
    wnid = sorted(read_class_list(class_list, N_CLASSES))[1]
    shutil.rmtree(root / "train" / wnid)
    with pytest.raises(DataError, match=f"train/{wnid}: class folder"):
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_class_still_packed_as_the_official_archive_unpacks(raw, tmp_path, class_list):
    """Issue 26: train/<wnid>.tar (one tar per class) said "class folder ... missing"."""
    import subprocess
    import tarfile

    root = _copy(raw, tmp_path)
    wnids = sorted(read_class_list(class_list, N_CLASSES))
    for w in wnids[1:3]:  # packed as ILSVRC2012_img_train.tar holds them: files at the top
        with tarfile.open(root / "train" / f"{w}.tar", "w") as tf:
            for f in sorted((root / "train" / w).iterdir()):
                tf.add(f, arcname=f.name)
        shutil.rmtree(root / "train" / w)
    with pytest.raises(DataError) as info:
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    msg = str(info.value)
    assert msg.startswith(f"{root / 'train' / wnids[1]}.tar: class {wnids[1]} is still packed")
    assert f"2 of the {N_CLASSES} classes" in msg and "missing" not in msg
    assert not (tmp_path / "prep").exists()
    # The command the message gives unpacks them; the preparation then succeeds.
    command = msg.split(": cd ", 1)[1].removesuffix("; then rerun")
    subprocess.run(["bash", "-c", f"cd {command}"], check=True)
    prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    assert len(PreparedDataset(tmp_path / "prep").indices("train")) == N_CLASSES * TRAIN


def test_official_archives_left_packed_in_the_root(tmp_path, class_list):
    (tmp_path / "ILSVRC2012_img_train.tar").write_bytes(b"")
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(DataError) as info:
        prepare(tmp_path, tmp_path / "prep", class_list=class_list)
    msg = str(info.value)
    assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar found" in msg
    assert "tar -xf ILSVRC2012_img_train.tar -C train" in msg and "cd train && for f" in msg


def test_flat_val_with_only_the_devkit_ground_truth_names_both_layouts(raw, tmp_path, class_list):
    root = _copy(raw, tmp_path)
    (root / "LOC_val_solution.csv").unlink()
    truth = root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    truth.parent.mkdir(parents=True)
    truth.write_text("490\n361\n171\n")
    with pytest.raises(DataError) as info:
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    msg = str(info.value)
    assert msg.startswith(f"{root / 'LOC_val_solution.csv'}: val label file not found")
    assert f"{truth} is the devkit's ground truth" in msg and "ILSVRC2012_ID, not wnid" in msg
    assert "(1) val/<wnid>/*.JPEG" in msg and "(2) a flat val/ with Kaggle's" in msg
    assert not (tmp_path / "prep").exists()


def test_missing_val_label(raw, tmp_path, class_list):
    root = _copy(raw, tmp_path)
    lines = (root / "LOC_val_solution.csv").read_text().splitlines()
    removed = lines.pop(3).split(",")[0]
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{removed}.JPEG: no label .*LOC_val_solution.csv"):
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    assert not (tmp_path / "prep").exists()


def test_missing_val_label_file(raw, tmp_path, class_list):
    root = _copy(raw, tmp_path)
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(DataError, match="LOC_val_solution.csv: val label file not found"):
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    assert not (tmp_path / "prep").exists()


def test_unreadable_image(raw, tmp_path, class_list):
    root = _copy(raw, tmp_path)
    wnid = sorted(read_class_list(class_list, N_CLASSES))[2]
    victim = sorted((root / "train" / wnid).iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated JPEG
    with pytest.raises(DataError, match=f"{victim.name}: unreadable image"):
        prepare(root, tmp_path / "prep", class_list=class_list, n_classes=N_CLASSES)
    assert not (tmp_path / "prep").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_class_list(tmp_path, raw):
    bad = tmp_path / "classes.txt"
    bad.write_text("n01749939\nnot-a-wnid\n")
    with pytest.raises(DataError, match="classes.txt:2: 'not-a-wnid'"):
        prepare(raw, tmp_path / "prep", class_list=bad)


def test_demo_raw_is_deterministic(tmp_path, class_list):
    kw = dict(class_list=class_list, n_classes=2, train_per_class=2, val_per_class=1, size=16)
    a = write_demo_raw(tmp_path / "a", seed=1, **kw)
    b = write_demo_raw(tmp_path / "b", seed=1, **kw)
    c = write_demo_raw(tmp_path / "c", seed=2, **kw)
    read = [p.read_bytes() for p in a]
    assert read == [p.read_bytes() for p in b]
    assert read != [p.read_bytes() for p in c]
    assert all(Image.open(p).format == "JPEG" for p in a if p.suffix == ".JPEG")


def test_cmc_list_is_the_shipped_class_list(class_list):
    from robustkd.data.imagenet_classes import CMC_WNIDS, compare_with_cmc

    assert list(CMC_WNIDS) == read_class_list(class_list)
    same = compare_with_cmc(list(reversed(CMC_WNIDS)), path=class_list)
    assert same["cmc"] and same["differ"] == 0
    assert same["sha256"].startswith("79f3f155") and same["sha256"].endswith("1397")
    others = [f"n{90000000 + i:08d}" for i in range(37)]
    swapped = compare_with_cmc([*CMC_WNIDS[37:], *others])
    assert not swapped["cmc"] and swapped["differ"] == 37
    assert swapped["not_in_cmc"] == others and len(swapped["missing_from_cmc"]) == 37
    assert compare_with_cmc(CMC_WNIDS[:50])["differ"] == 50  # half of CMC's classes left out
    assert compare_with_cmc(CMC_WNIDS[:50], subset=True)["cmc"]  # the miniature's part of it


def test_another_class_list_warns_and_is_recorded(raw, tmp_path, class_list, caplog):
    """Two of four classes outside CMC's list: prepared as given, a warning, the provenance."""
    import json
    import logging

    wnids = read_class_list(class_list, 2) + ["n01440764", "n01443537"]  # the raw's non-CMC
    other = tmp_path / "other100.txt"
    other.write_text("".join(f"{w}\n" for w in wnids))
    with caplog.at_level(logging.WARNING, logger="robustkd"):
        out = prepare(raw, tmp_path / "prep", class_list=other, n_classes=4)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert f"{other}: not the CMC ImageNet-100 class list" in warned[0]
    assert "2 classes differ" in warned[0] and "n01440764, n01443537" in warned[0]
    assert PreparedDataset(out).classes == sorted(wnids)
    record = json.loads((out / "provenance.json").read_text())["class_list"]
    assert record["cmc"] is False and record["differ"] == 2
    assert record["not_in_cmc"] == ["n01440764", "n01443537"] and record["path"] == str(other)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustkd"):
        out = prepare(raw, tmp_path / "cmc", class_list=class_list, n_classes=N_CLASSES)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    record = json.loads((out / "provenance.json").read_text())["class_list"]
    assert record["cmc"] is True and record["differ"] == 0


def test_a_reordered_cmc_list_with_n_classes_is_compared_by_the_classes_used(
    tmp_path, class_list, caplog
):
    """n_classes < 100 of a reordered CMC list takes other classes: cmc false, differ counted."""
    import json
    import logging

    from robustkd.data.imagenet_classes import CMC_WNIDS

    wnids = read_class_list(class_list)
    reordered = tmp_path / "reordered.txt"
    # CMC's two first classes, then two CMC classes beyond its first four, then the rest.
    order = [*wnids[:2], *wnids[50:52], *wnids[2:50], *wnids[52:]]
    reordered.write_text("".join(f"{w}\n" for w in order))
    raw = tmp_path / "raw"
    sizes = {"train_per_class": 2, "val_per_class": 1, "size": 16}
    write_demo_raw(raw, seed=1, class_list=reordered, n_classes=4, **sizes)
    with caplog.at_level(logging.WARNING, logger="robustkd"):
        out = prepare(raw, tmp_path / "prep", class_list=reordered, n_classes=4)
    assert PreparedDataset(out).classes == sorted(order[:4])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "2 classes differ" in warned[0], warned
    assert "2 of the first 4 classes of CMC's list are missing" in warned[0]
    record = json.loads((out / "provenance.json").read_text())["class_list"]
    assert record["cmc"] is False and record["differ"] == 2
    assert record["reference"] == "the first 4 classes of CMC's list"
    assert record["not_in_cmc"] == sorted(CMC_WNIDS[50:52])
    assert record["missing_from_cmc"] == sorted(CMC_WNIDS[2:4])

    caplog.clear()  # its first two classes are CMC's first two: the same classes, no warning
    with caplog.at_level(logging.WARNING, logger="robustkd"):
        out = prepare(raw, tmp_path / "prep2", class_list=reordered, n_classes=2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    record = json.loads((out / "provenance.json").read_text())["class_list"]
    assert record["cmc"] is True and record["differ"] == 0
